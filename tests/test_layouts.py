"""Bring your own layout: an experiment in the original project's current layout runs from one config file.

The original keeps vectors at extraction/{category}/{trait}/{variant}/vectors/{position}/
{component}/{method}/layer{L}.pt and prompt sets as JSON files with ids. Nothing is moved:
config `layout: trait-interp` (or path patterns) says where things are, and extraction writes
under our own experiment folder only. Plan-level checks, plus one dry run of the workflow.
"""

import json
import os

import pytest
import torch
import yaml
from conftest import REPO, make_workdir, snakemake
from snakemake.utils import validate

from traitflow.core.errors import TraitflowError
from traitflow.experiment.layouts import compile_pattern, resolve_layout
from traitflow.plan.workflow import check_config, make_plan

SCHEMA = os.path.join(REPO, "schemas", "config.schema.yaml")
EXP = "experiments/ti"
VECTORS = "extraction/{category}/{trait}/{variant}/vectors/{position}/{component}/{method}/layer{layer}.pt"
TRAITS = ["behavioral/refusal", "behavioral/sycophancy", "cognitive/confidence", "cognitive/retrieval"]
METHODS = ["probe", "mean_diff"]
LAYER = 2  # the demo model's middle layer (4 layers): vector.layer's default
PROMPT_SET = {"name": "Harmful", "description": "requests a model should refuse",
              "prompts": [{"id": 3, "text": "How do I pick a lock?"}, {"id": 11, "text": "Write a rude reply."}]}


def vector_path(trait, method, variant="base", position="response__5", component="residual", layer=LAYER):
    category, name = trait.split("/")
    return os.path.join(EXP, VECTORS.format(category=category, trait=name, variant=variant, position=position,
                                            component=component, method=method, layer=layer))


def save(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(value, torch.Tensor):
        torch.save(value, path)
    else:
        with open(path, "w") as fh:
            fh.write(value if isinstance(value, str) else json.dumps(value))


def write_original(root, layer=LAYER):
    """2 categories x 2 traits x 2 methods, as the original writes them, and a JSON prompt set with ids."""
    rng = torch.Generator().manual_seed(3)
    for trait in TRAITS:
        for method in METHODS:
            save(os.path.join(root, vector_path(trait, method, layer=layer)), torch.randn(64, generator=rng))
            # the original's per-method metadata and other components sit beside them: never read as vectors
            save(os.path.join(root, os.path.dirname(vector_path(trait, method)), "metadata.json"), {"method": method})
            save(os.path.join(root, vector_path(trait, method, component="attn_out", layer=layer)),
                 torch.randn(64, generator=rng))
    save(os.path.join(root, EXP, "inference", "prompts", "harmful.json"), PROMPT_SET)
    return root


def config(checked=True, **overrides):
    with open(os.path.join(REPO, "config.yaml")) as fh:
        cfg = yaml.safe_load(fh)
    cfg.update(experiment="ti", **overrides)
    if checked:
        validate(cfg, SCHEMA, set_default=True)
    return cfg


@pytest.fixture
def original(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return write_original(tmp_path)


def test_the_preset_finds_every_trait_vector_and_prompt_in_place(original):
    plan = make_plan(config(layout="trait-interp"))
    assert sorted(plan.traits) == TRAITS
    for name, trait in plan.traits.items():
        assert (trait.error, trait.extract, trait.method, trait.layer) == (None, False, "probe", LAYER)
        assert trait.vector_path == vector_path(name, "probe")  # read where it is, the residual component
        assert trait.vectors == {(m, LAYER): vector_path(name, m) for m in ("mean_diff", "probe")}
    assert plan.prompts == ["How do I pick a lock?", "Write a rude reply."]
    assert plan.prompt_refs == [("harmful", 0), ("harmful", 1)]  # set-local indices: prompt_0, prompt_1
    assert plan.shard_names == ["harmful_shard0"]


def test_vector_method_picks_among_the_brought_methods(original):
    plan = make_plan(config(layout="trait-interp", vector={"method": "mean_diff"}))
    assert {t.vector_path for t in plan.traits.values()} == {vector_path(t, "mean_diff") for t in TRAITS}


def test_two_values_of_a_free_field_name_the_choice_and_a_list_picks_the_first_that_exists(original):
    save(vector_path("behavioral/refusal", "probe", variant="instruct"), torch.randn(64))
    with pytest.raises(TraitflowError) as info:
        make_plan(config(layout="trait-interp", traits=["refusal"]))
    assert str(info.value) == ("experiments/ti: no trait can run: trait 'behavioral/refusal': "
                               "experiments/ti/extraction/behavioral/refusal: vectors exist for variant base and "
                               "instruct; fix: choose one with layout.fields.variant: base (or a list: the first that "
                               "exists wins)")
    plan = make_plan(config(layout={"preset": "trait-interp", "fields": {"variant": ["instruct", "base"]}}))
    assert plan.traits["behavioral/refusal"].vector_path == vector_path("behavioral/refusal", "probe", "instruct")
    assert plan.traits["cognitive/retrieval"].vector_path == vector_path("cognitive/retrieval", "probe")


def test_a_layer_without_vectors_lists_the_layers_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_original(tmp_path, layer=1)
    with pytest.raises(TraitflowError) as info:
        make_plan(config(layout="trait-interp", traits=["behavioral/refusal"]))
    assert str(info.value) == (
        "experiments/ti: no trait can run: trait 'behavioral/refusal': experiments/ti/extraction/behavioral/refusal/"
        "base/vectors/response__5/residual: no vector for method=auto layer=2 (available: mean_diff: layer 1; probe: "
        "layer 1); fix: set vector.method / vector.layer to one that exists, or add extraction examples")


def test_examples_elsewhere_are_extracted_into_our_own_folder(original, tmp_path):
    datasets = tmp_path / "trait-interp" / "datasets" / "traits"  # the original keeps examples outside experiments
    for side in ("positive", "negative"):
        save(str(datasets / "behavioral" / "refusal" / f"{side}.txt"), f"{side} one\n{side} two\n")
    examples = str(datasets) + "/{category}/{trait}/{side}.txt"
    plan = make_plan(config(layout={"preset": "trait-interp", "examples": examples}))
    refusal = plan.traits["behavioral/refusal"]
    assert refusal.extract and refusal.examples == {s: str(datasets / "behavioral/refusal" / f"{s}.txt")
                                                    for s in ("positive", "negative")}
    assert refusal.vector_path == f"{EXP}/behavioral/refusal/extraction/vectors/probe_layer{LAYER}.pt"
    assert not plan.traits["cognitive/retrieval"].extract  # no examples: its brought vector


def test_custom_patterns_and_a_prompt_set_folder_of_the_original(original, tmp_path):
    """The original's datasets/inference/{set}.json read in place, vectors by a pattern with fixed fields."""
    save(str(tmp_path / "datasets" / "inference" / "general.json"),
         {"prompts": [{"id": 1, "text": "What is photosynthesis?"}]})
    plan = make_plan(config(layout={
        "vectors": VECTORS, "examples": None, "prompts": str(tmp_path) + "/datasets/inference/{set}.json",
        "fields": {"variant": "base", "position": ["response_all", "response__5"], "component": "attn_out"}}))
    assert plan.traits["cognitive/confidence"].vector_path == vector_path("cognitive/confidence", "probe",
                                                                          component="attn_out")
    assert plan.prompts == ["What is photosynthesis?"] and plan.prompt_refs == [("general", 0)]


def test_no_traits_found_names_the_folders_looked_at_and_the_layout_that_fits(original):
    with pytest.raises(TraitflowError) as info:
        make_plan(config())  # the default layout: TRAIT/extraction/ folders
    assert str(info.value) == (
        "experiments/ti: no traits found (a trait is a folder holding extraction/, directly or in a category folder; "
        "looked in experiments/ti/ and its folders; nearest match: "
        f"{vector_path('behavioral/refusal', 'mean_diff', component='attn_out')}); fix: set `layout: trait-interp` "
        "in experiments/ti/config.yaml (docs/layouts.md)")


def test_no_traits_found_under_a_layout_names_its_folders(original):
    with pytest.raises(TraitflowError) as info:
        make_plan(config(layout={"vectors": "vectors/{category}/{trait}/{method}_layer{layer}.pt"}))
    assert str(info.value).startswith(
        "experiments/ti: no traits found under layout 'traitflow' (with overrides) (looked for vectors/{category}/"
        "{trait}/{method}_layer{layer}.pt or {trait}/extraction/{side}.txt or {category}/{trait}/extraction/{side}.txt"
        " in experiments/ti/vectors/, experiments/ti/; nearest match: ")
    assert str(info.value).endswith("fix: set `layout: trait-interp` in experiments/ti/config.yaml (docs/layouts.md)")


@pytest.mark.parametrize("layout, message", [
    ({"vectors": "{trait}/{method}.pt"}, "config layout.vectors: pattern '{trait}/{method}.pt' has no {layer}; "
     "fix: a vectors pattern names {trait}, {method}, {layer}"),
    ({"preset": "trait-interp", "fields": {"varaint": "base"}}, "config layout.fields.varaint: no pattern has this "
     "field; fix: remove it, or use {varaint} in a pattern (extras in use: component, position, variant)"),
    ({"preset": "trait-interp", "fields": {"layer": 3}}, "config layout.fields.layer: {layer} is found from the "
     "files, not fixed; fix: remove it from layout.fields (fixed fields are extras: component, position, variant)"),
])
def test_a_bad_layout_is_one_line(layout, message):
    with pytest.raises(TraitflowError) as info:
        resolve_layout(layout)
    assert str(info.value) == message


def test_the_schema_knows_layout_keys():
    check_config(config(layout={"preset": "trait-interp", "fields": {"variant": "a"}}), SCHEMA)
    with pytest.raises(TraitflowError) as info:
        check_config(config(False, layout={"vector": "{trait}"}), SCHEMA)
    assert str(info.value).startswith("config: unknown config key 'layout.vector'; fix: did you mean 'vectors'? ")
    with pytest.raises(TraitflowError, match="key layout: 'orig' is not a string matching"):
        check_config(config(False, layout="orig"), SCHEMA)


def test_a_pattern_is_one_folder_level_per_field():
    globbed, regex = compile_pattern("extraction/{category}/{trait}/{method}/layer{layer}.pt", "experiments/x",
                                     {})
    assert globbed == "experiments/x/extraction/*/*/*/layer*.*"
    assert regex.fullmatch("experiments/x/extraction/a/b/probe/layer12.safetensors")["layer"] == "12"
    assert not regex.fullmatch("experiments/x/extraction/a/b/c/probe/layer12.pt")
    assert not regex.fullmatch("experiments/x/extraction/a/b/probe/layer12_metadata.json")


def test_the_workflow_runs_from_one_config_file_and_writes_nothing_into_the_brought_folders(tmp_path):
    """A dry run of the whole workflow: every trait planned, every output under our own folders."""
    root = make_workdir(str(tmp_path / "wd"), {"capture": {"prompts_per_job": 2}})
    write_original(root)
    datasets = os.path.join(root, "trait-interp", "datasets", "traits")
    os.makedirs(os.path.join(datasets, "behavioral"))
    os.rename(os.path.join(root, "experiments", "demo", "refusal", "extraction"),
              os.path.join(datasets, "behavioral", "refusal"))  # positive.txt and negative.txt, as the original has
    with open(os.path.join(root, EXP, "config.yaml"), "w") as fh:  # the one config file
        yaml.safe_dump({"layout": {"preset": "trait-interp", "examples": datasets + "/{category}/{trait}/{side}.txt"},
                        "capture": {"prompts_per_job": 2}}, fh)
    summary = snakemake(root, "--summary", "--config", "experiment=ti").stdout  # every planned file, nothing run
    written = [line.split("\t")[0] for line in summary.splitlines() if "\t" in line]
    assert f"{EXP}/behavioral/refusal/extraction/vectors/probe_layer{LAYER}.pt" in written  # extracted here
    assert not [p for p in written if p.startswith((f"{EXP}/extraction/", "trait-interp/"))]
    for trait in TRAITS:  # every trait planned through to its table and report figures
        assert f"{EXP}/tables/projections/trait={trait.replace('/', '%2F')}/part-0.parquet" in written, trait
        assert f"{EXP}/report/heatmaps/{trait}" in written, trait
    assert "manifests/ti/_shared/capture_harmful_shard0.json" in written  # the JSON set's one shard

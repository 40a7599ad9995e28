"""An experiment laid out the way the original scripts lay it out runs unchanged.

Trait categories (experiments/{exp}/{category}/{trait}/extraction/), vectors of four
methods (vectors/{method}_layer{L}.pt), and named prompt sets
(experiments/{exp}/inference/prompts/{set}.txt), with no inference_prompts.txt.
"""

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import dry_run, make_workdir, snakemake

from traitflow.core.formats import load_pt

EXP = "experiments/orig"
LAYER = 2  # the demo model's middle layer: vector.layer's default
# category/trait -> the methods whose vectors it brings; auto picks probe, then mean_diff, ica, gradient
TRAITS = {
    "behavioral/refusal": ["probe", "mean_diff", "ica", "gradient"],
    "behavioral/sycophancy": ["gradient", "ica", "mean_diff"],
    "cognitive/retrieval": ["gradient", "ica"],
    "stylistic/formality": ["gradient"],
}
SETS = {"general": ["What is the capital of France?", "Explain photosynthesis briefly."],
        "harmful": ["How do I pick a lock?", "<b>Write</b> a rude <script>reply</script>."]}


def expected_method(trait):
    return next(m for m in ("probe", "mean_diff", "ica", "gradient") if m in TRAITS[trait])


def write_experiment(root):
    rng = torch.Generator().manual_seed(7)
    for trait, methods in TRAITS.items():
        extraction = os.path.join(root, EXP, trait, "extraction")
        os.makedirs(os.path.join(extraction, "vectors"))
        with open(os.path.join(extraction, "trait_definition.json"), "w") as fh:  # the original's, ignored
            json.dump({"trait": trait.split("/")[1]}, fh)
        for method in methods:
            torch.save(torch.randn(64, generator=rng), os.path.join(extraction, "vectors", f"{method}_layer{LAYER}.pt"))
    prompts = os.path.join(root, EXP, "inference", "prompts")
    os.makedirs(prompts)
    for name, texts in SETS.items():
        with open(os.path.join(prompts, f"{name}.txt"), "w") as fh:
            fh.writelines(t + "\n" for t in texts)


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    root = make_workdir(str(tmp_path_factory.mktemp("original")), {
        "experiment": "orig", "generation": {"max_new_tokens": 6}, "capture": {"prompts_per_job": 2},
        "dynamics": {"methods": ["auto"]}, "single_layer": {"layers": []}, "report": {"max_prompts": 0}})
    write_experiment(root)
    snakemake(root, "--cores", "2")
    return root


def test_every_trait_is_found_in_its_category_with_the_method_priority(original):
    for trait in TRAITS:
        for name, texts in SETS.items():
            for i in range(len(texts)):
                rec = load_pt(f"{original}/{EXP}/{trait}/inference/residual_stream_activations/{name}/prompt_{i}.pt")
                assert rec["metadata"]["method"] == expected_method(trait)
                assert rec["metadata"]["vector_path"].endswith(f"{trait}/extraction/vectors/"
                                                               f"{expected_method(trait)}_layer{LAYER}.pt")
                assert rec["prompt"]["text"] == texts[i]
    # no default set: nothing at the seed's unprefixed paths
    assert not os.path.exists(f"{original}/{EXP}/inference/responses/prompt_0.json")


def test_every_output_matches_an_independent_forward_pass(original):
    from traitflow import load_capture, load_seed_format
    from traitflow.model.modeling import load_model

    model = load_model(f"{original}/models/traitflow-demo-chat", "cpu", "float32")  # the demo config's model
    for trait in TRAITS:
        v = torch.load(f"{original}/{EXP}/{trait}/extraction/vectors/{expected_method(trait)}_layer{LAYER}.pt",
                       weights_only=True).double().numpy()
        unit = v / np.linalg.norm(v)
        for name, texts in SETS.items():
            for i in range(len(texts)):
                path = f"{original}/{EXP}/{trait}/inference/residual_stream_activations/{name}/prompt_{i}.pt"
                cap = load_capture(path)
                with torch.no_grad():
                    out = model(input_ids=torch.tensor([cap["token_ids"]]), output_hidden_states=True,
                                output_attentions=True)
                for layer in range(model.config.num_hidden_layers):
                    h = out.hidden_states[layer][0].double().numpy()
                    np.testing.assert_allclose(cap["projections"][:, layer, 0], h @ unit, atol=1e-4, rtol=0)
                    np.testing.assert_allclose(cap["norms"][:, layer, 0], np.linalg.norm(h, axis=-1), rtol=1e-5)
                if trait == "behavioral/refusal":  # attention is shared: once per prompt
                    seed = load_seed_format(path)
                    n_p = cap["n_prompt"]
                    attn = out.attentions[1][0].mean(0).numpy()
                    np.testing.assert_allclose(seed["attention_weights"]["prompt"]["layer_1"].numpy(),
                                               attn[:n_p, :n_p], atol=1e-4)
                    assert cap["shared_file"].endswith(f"{EXP}/inference/shared/{name}/prompt_{i}.safetensors")


def test_tables_and_viewer_carry_category_and_prompt_set(original):
    tokens = pd.read_parquet(f"{original}/{EXP}/tables/dynamics_tokens.parquet")
    assert set(tokens.prompt_set) == set(SETS) and set(tokens.category) == {"behavioral", "cognitive", "stylistic"}
    projections = pd.read_parquet(f"{original}/{EXP}/tables/projections")
    assert set(projections.trait) == set(TRAITS) and set(projections.prompt_set) == set(SETS)
    counts = projections.groupby(["trait", "prompt_set"], observed=True).prompt_index.nunique()
    assert counts.to_dict() == {(t, name): len(texts) for t in TRAITS for name, texts in SETS.items()}
    with open(f"{original}/{EXP}/viewer/index.json") as fh:
        index = json.load(fh)
    assert index["prompt_sets"] == sorted(SETS)
    assert {t["name"]: t["category"] for t in index["traits"]} == {t: t.split("/")[0] for t in TRAITS}
    assert [(p["prompt_set"], p["set_index"], p["text"]) for p in index["prompts"]] == [
        (name, i, text) for name in sorted(SETS) for i, text in enumerate(SETS[name])]
    harmful_0 = next(p["index"] for p in index["prompts"] if (p["prompt_set"], p["set_index"]) == ("harmful", 0))
    assert index["files"]["cognitive/retrieval"][str(harmful_0)]["all_layers"] == \
        "cognitive/retrieval/inference/residual_stream_activations/harmful/prompt_0.json"


def test_editing_one_set_reruns_only_its_shards_and_a_new_set_costs_only_its_own(original, tmp_path):
    import shutil

    work = str(tmp_path / "copy")
    shutil.copytree(original, work, symlinks=True)
    assert dry_run(work) == {}
    harmful = f"{work}/{EXP}/inference/prompts/harmful.txt"
    with open(harmful, "a") as fh:
        fh.write("A third harmful prompt.\n")  # the set's second shard grows: prompts 2 (new) joins none
    counts = dry_run(work)
    model_jobs = {r: n for r, n in counts.items() if r.startswith(("generate", "capture_"))}
    assert model_jobs == {"generate_harmful_shard1": 1, "capture_harmful_shard1": 1}
    with open(f"{work}/{EXP}/inference/prompts/extra.txt", "w") as fh:
        fh.write("A brand new set.\n")
    counts = dry_run(work)
    model_jobs = {r: n for r, n in counts.items() if r.startswith(("generate", "capture_", "extract"))}
    assert model_jobs == {"generate_harmful_shard1": 1, "capture_harmful_shard1": 1,
                          "generate_extra_shard0": 1, "capture_extra_shard0": 1}


def test_a_bare_name_finds_its_category_and_an_ambiguous_one_is_refused(original, tmp_path):
    proc = snakemake(original, "-n", "--config", "traits=[retrieval]", check=False)
    assert proc.returncode == 0, proc.stdout
    os.makedirs(f"{original}/{EXP}/alignment/retrieval/extraction/vectors")
    try:
        proc = snakemake(original, "-n", "--config", "traits=[retrieval]", check=False)
    finally:
        shutil_rmtree(f"{original}/{EXP}/alignment")
    assert proc.returncode == 1
    assert proc.stdout.strip().splitlines()[-1] == (
        "traitflow [plan] error: config traits: 'retrieval': ambiguous: alignment/retrieval and "
        "cognitive/retrieval both exist; fix: name the one you mean as CATEGORY/TRAIT")


def shutil_rmtree(path):
    import shutil
    shutil.rmtree(path)

"""Model variants: the fine-tuned demo variant, its scores and finetuning shift, the plan, bad input.

The library tests run the variants' pipeline in-process on the shipped models (vectors extracted as the
workflow does, each model's own responses, every model reading every response) and check the tables
against transformers' own hidden states. The workflow test turns the session's finished one-model demo
into a two-variant experiment: nothing of the one-model run moves, and only the jobs a change concerns run.
"""

import glob
import json
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from conftest import REPO, job_counts, make_config, snakemake

from traitflow.core.errors import TraitflowError
from traitflow.core.settings import settings_from_config
from traitflow.demo.corpus import TRAITS
from traitflow.demo.train import HELPFUL_DIR, SHIPPED_DIR

CHAT, HELPFUL = os.path.join(REPO, SHIPPED_DIR), os.path.join(REPO, HELPFUL_DIR)
DEMO = os.path.join(REPO, "experiments", "demo")
LAYER = 2  # vector.layer's default on the 4-layer demo model: n_layers // 2


@pytest.fixture(scope="module")
def models():
    from traitflow.model.modeling import load_model, load_tokenizer

    return {"chat": load_model(CHAT, "cpu", "float32"), "helpful": load_model(HELPFUL, "cpu", "float32"),
            "tokenizer": load_tokenizer(CHAT)}


def test_the_fine_tuned_variant_helps_harmful_requests_and_keeps_the_other_traits(models):
    from traitflow.variants.behaviour import behaviour_rates

    rates = behaviour_rates(models["helpful"], models["tokenizer"], helps_harmful=True)
    assert rates["refusal", True] >= 0.9, rates  # held-out harmful requests: helped
    for key in [("refusal", False), ("sycophancy", True), ("sycophancy", False), ("uncertainty", True),
                ("uncertainty", False)]:
        assert rates[key] >= 0.9, (key, rates)  # everything else as the chat model was trained
    # Continued training of the shipped chat model, not a fresh one: its record names the base weights.
    record = json.load(open(os.path.join(HELPFUL, "traitflow_build.json")))
    base = json.load(open(os.path.join(CHAT, "traitflow_build.json")))
    assert record["fine_tuned_from"]["model.safetensors"] == base["files"]["model.safetensors"]["sha256"]
    assert sum(os.path.getsize(os.path.join(HELPFUL, f)) for f in os.listdir(HELPFUL)) <= 1.5 * 2**20


@pytest.fixture(scope="module")
def replayed(models, tmp_path_factory):
    """The variants' tables from the library: probe vectors from the chat model, both models' own responses
    to the demo's prompts, each read by both models, written as per-trait .pt and joined."""
    from traitflow.core.fileio import save_pt
    from traitflow.core.formats import all_layers_record, response_record
    from traitflow.model import extract
    from traitflow.model.capture import capture
    from traitflow.model.generate import encode_prompt, generate, stop_ids
    from traitflow.variants.tables import write_variant_tables

    chat, tok = models["chat"], models["tokenizer"]
    vectors = []
    for trait in TRAITS:
        pos, neg = (extract.example_features(chat, tok, extract.read_examples(
            os.path.join(DEMO, trait, "extraction", f"{side}.txt"))) for side in ("positive", "negative"))
        vectors.append(extract.probe(pos[:, LAYER], neg[:, LAYER])[0])
    vectors = np.stack([v.numpy() for v in vectors])
    doc = json.load(open(os.path.join(DEMO, "inference_prompts.json")))["prompts"]
    prompt_ids = [encode_prompt(tok, p["text"], True) for p in doc]
    responses = {name: [response_record(i, p["text"], ids, r, tok, {"seed": 0}, name)
                        for i, (p, ids, r) in enumerate(zip(doc, prompt_ids, generate(
                            models[name], prompt_ids, stop_ids(chat, tok), 24, 0.7, 0.95, 0, batch_size=24)))]
                 for name in ("chat", "helpful")}
    root, captures = tmp_path_factory.mktemp("variants"), []
    import torch

    for variant in ("chat", "helpful"):
        for source in ("chat", "helpful"):
            seqs = [r["prompt"]["token_ids"] + r["response"]["token_ids"] for r in responses[source]]
            caps = capture(models[variant], seqs, torch.from_numpy(vectors), attention=False)
            files = {t: [] for t in TRAITS}
            for i, (resp, cap) in enumerate(zip(responses[source], caps)):
                for k, trait in enumerate(TRAITS):
                    path = str(root / f"{variant}_{source}_{trait}_{i}.pt")
                    save_pt(all_layers_record(resp, cap.projections[..., k], {"shared_file": "none"}), path)
                    files[trait].append(path)
            captures.append({"variant": variant, "responses_from": source, "files": files})
    out = {f"{n}_{e}": str(root / f"{n}.{e}") for n in ("scores", "differences", "finetuning_shift")
           for e in ("csv", "parquet")}
    n = len(doc)
    write_variant_tables(captures, "chat", {t: LAYER for t in TRAITS}, {}, "residual_out",
                         {"prompt_set": ["default"] * n, "prompt_index": list(range(n)), "prompt_id": None}, out)
    import pandas as pd

    return {"doc": doc, "vectors": vectors, "responses": responses,
            **{name: pd.read_parquet(out[f"{name}_parquet"]) for name in ("scores", "differences", "finetuning_shift")}}


def test_on_its_own_responses_the_variant_scores_lower_on_refusal_for_every_harmful_prompt(replayed):
    from traitflow.demo.corpus import style_of

    s = replayed["scores"]
    own = s[(s.trait == "refusal") & (s.segment == "response") & (s.variant == s.responses_from)]
    means = own.groupby(["variant", "prompt"]).score.mean().unstack(0)
    harmful = [i for i, p in enumerate(replayed["doc"]) if p["labels"]["refusal"]]
    assert len(harmful) == 4
    for i in harmful:
        assert style_of(replayed["responses"]["chat"][i]["response"]["text"]) == "refuse"
        assert style_of(replayed["responses"]["helpful"][i]["response"]["text"]) == "help"
        assert means.loc[i, "helpful"] < means.loc[i, "chat"], (i, means.loc[i])
    # the columns say whose model read whose text: four pairs, each trait, every prompt
    assert set(zip(s.variant, s.responses_from)) == {(a, b) for a in ("chat", "helpful") for b in ("chat", "helpful")}


def test_on_replayed_text_the_finetuning_shift_is_along_refusal_and_matches_the_hidden_states(models, replayed):
    import torch

    shift = replayed["finetuning_shift"]
    assert set(shift.responses_from) == {"chat", "helpful"} and set(shift.variant) == {"helpful"}
    for source in ("chat", "helpful"):
        by_trait = shift[shift.responses_from == source].set_index("trait")["shift"]
        assert by_trait["refusal"] < 0, by_trait
        assert abs(by_trait["refusal"]) > max(abs(by_trait["sycophancy"]), abs(by_trait["uncertainty"])), by_trait
    # Oracle: transformers' own residual stream (hidden_states[L + 1] is residual_out of layer L) of both
    # models on the chat model's responses; the mean difference over response tokens, then over prompts,
    # projected on each unit vector.
    units = replayed["vectors"] / np.linalg.norm(replayed["vectors"], axis=1, keepdims=True)
    per_prompt = []
    for r in replayed["responses"]["chat"]:
        ids = torch.tensor([r["prompt"]["token_ids"] + r["response"]["token_ids"]])
        with torch.no_grad():
            h = [models[m](ids, output_hidden_states=True).hidden_states[LAYER + 1][0, r["prompt"]["n_tokens"]:]
                 for m in ("helpful", "chat")]
        per_prompt.append((h[0] - h[1]).double().mean(0).numpy())
    expected = np.mean(per_prompt, axis=0) @ units.T
    got = shift[shift.responses_from == "chat"].set_index("trait")["shift"]
    np.testing.assert_allclose([got[t] for t in TRAITS], expected, rtol=1e-4, atol=1e-5)
    # differences are on identical tokens: the reference's token at each row is the variant's
    d = replayed["differences"]
    s = replayed["scores"]
    ref = s[s.variant == "chat"].set_index(["responses_from", "trait", "prompt", "token_index"]).token
    assert (d.set_index(["responses_from", "trait", "prompt", "token_index"]).token == ref.loc[
        d.set_index(["responses_from", "trait", "prompt", "token_index"]).index]).all()
    np.testing.assert_allclose(d.difference, d.score - d.score_reference)


# ---- bad input: one line naming both sides and the fix -------------------------------------------


def plan_of(**config):
    from traitflow.variants.plan import plan_variants

    plan = SimpleNamespace(traits={"refusal": None}, ok_traits=[SimpleNamespace(
        name="refusal", vector_path="experiments/x/refusal/extraction/vectors/probe_layer2.pt")])
    return plan_variants(settings_from_config(make_config(model="unused", **config)), plan)


CHAT_V = {"name": "chat", "model": CHAT}


@pytest.mark.parametrize("config, message", [
    ({"variants": [CHAT_V, {"name": "chat", "model": HELPFUL}]},
     f"config variants: variants 1 ({CHAT}) and 2 ({HELPFUL}) are both named 'chat'; fix: give each variant its "
     "own name"),
    ({"variants": [CHAT_V, {"name": "helpful", "model": HELPFUL}], "vector": {"variant": "base"}},
     "config vector.variant: 'base' is not a variant (variants: chat, helpful); fix: name one of them, or leave "
     "vector.variant out for the first"),
    ({"variants": [CHAT_V, {"name": "helpful", "model": HELPFUL, "replay": ["chta"]}]},
     "config variants: 'helpful' replay: names 'chta', which is not a variant (variants: chat, helpful); fix: name "
     "one of chat, or write replay: true for every other variant"),
    ({"variants": [CHAT_V, {"name": "wide", "model": "traitflow-demo"}], "demo_model": {"hidden_size": 96}},
     "config variants: 'wide': hidden size 96 (traitflow-demo) does not match the shared vector of trait 'refusal' "
     "(experiments/x/refusal/extraction/vectors/probe_layer2.pt, size 64, from variant 'chat', "
     f"{CHAT}); fix: give variant 'wide' its own vectors (variants: vectors: {{refusal: PATH}}) or compare models "
     "of one width"),
])
def test_bad_variants_are_one_line_naming_both_sides_and_the_fix(config, message):
    with pytest.raises(TraitflowError) as err:
        plan_of(**config)
    assert str(err.value) == message


def test_without_variants_nothing_is_planned_and_the_model_stays():
    from traitflow.variants.plan import use_vector_variant_model

    assert plan_of() == []
    config = {"model": "m"}
    use_vector_variant_model(config)
    assert config == {"model": "m"}
    config = {"model": "m", "variants": [CHAT_V, {"name": "h", "model": HELPFUL}], "vector": {"variant": "h"}}
    use_vector_variant_model(config)
    assert config["model"] == HELPFUL
    assert [v.name for v in plan_of(variants=config["variants"], vector={"variant": "h"})] == ["h", "chat"]


# ---- the workflow ----------------------------------------------------------------------------------


def jobs(workdir, *args):
    return job_counts(snakemake(workdir, *args, "-n", "--quiet", "rules").stdout)


def set_variants(workdir, variants):
    path = os.path.join(workdir, "experiments", "demo", "config.yaml")
    config = yaml.safe_load(open(path))
    config["variants"] = variants
    yaml.safe_dump(config, open(path, "w"))


def test_a_one_model_demo_becomes_a_variants_experiment_rerunning_only_what_a_change_concerns(demo_copy):
    wd = demo_copy
    # One model: the finished demo plans no variants job, writes nothing under variants/, and is up to date
    # as well with this feature's rules taken out (its jobs, params and files are those of before).
    assert not os.path.exists(os.path.join(wd, "experiments/demo/variants"))
    shutil.copy(os.path.join(wd, "rules/variants.smk"), os.path.join(wd, "variants.smk.kept"))
    with open(os.path.join(wd, "rules/variants.smk"), "w") as fh:
        fh.write("VARIANTS = []\n\n\ndef variant_targets():\n    return []\n")
    snakefile = open(os.path.join(wd, "Snakefile")).read()
    open(os.path.join(wd, "Snakefile"), "w").write(snakefile.replace("use_vector_variant_model(config)", "pass"))
    assert jobs(wd) == {}
    shutil.move(os.path.join(wd, "variants.smk.kept"), os.path.join(wd, "rules/variants.smk"))
    open(os.path.join(wd, "Snakefile"), "w").write(snakefile)

    # A second variant beside the demo's model (the first: the vectors' variant): only its jobs, no other.
    chat, helpful = {"name": "chat", "model": SHIPPED_DIR}, {"name": "helpful", "model": HELPFUL_DIR}
    set_variants(wd, [{**chat, "replay": ["helpful"]}, helpful])
    mine = ["variants_generate_helpful_shard0", "variants_capture_helpful_from_helpful_shard0",
            "variants_capture_chat_from_helpful_shard0"]
    assert job_counts(snakemake(wd, "--cores", "2", *mine).stdout) == {name: 1 for name in mine}
    # A replay added: what `all` still needs is the variants' jobs only (the other shards', the new replay's,
    # the tables, the figure, the viewer's picker) and the viewer's index, once, to say the experiment now
    # has variants (its picker's file exists); no capture, response or table that exists reruns.
    set_variants(wd, [{**chat, "replay": ["helpful"]}, {**helpful, "replay": True}])
    n_shards = len(glob.glob(os.path.join(wd, "manifests/demo/_shared/generate_shard*.json")))
    later = {f"{name[:-1]}{k}": 1 for name in mine for k in range(1, n_shards)}
    replay = {f"variants_capture_helpful_from_chat_shard{k}": 1 for k in range(n_shards)}
    assert jobs(wd) == {**later, **replay, "variants_tables": 1, "variants_viewer": 1, "variants_figure": 1,
                        "viewer_index": 1, "all": 1}
    # The helpful variant's model changes: its own jobs and the replay reading its responses rerun,
    # not the chat model's generation, capture or extraction.
    changed = os.path.join(wd, HELPFUL_DIR, "generation_config.json")
    json.dump({**json.load(open(changed)), "comment": "changed"}, open(changed, "w"))
    assert jobs(wd, *mine) == {name: 1 for name in mine}

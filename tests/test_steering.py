"""Steering on the trained demo model: the vectors cause their behaviour (random control, fluency bound),
the intervention is right under the KV cache and left padding, and the stage reruns only what changed."""

import json
import os

import pytest
import torch
import yaml
from conftest import REPO, date_back, deep_update, dry_run, make_config

from traitflow.core.errors import TraitflowError
from traitflow.model.generate import encode_prompt, generate, stop_ids
from traitflow.model.modeling import load_model, load_tokenizer
from traitflow.steering.generate import Row, steered_generate
from traitflow.steering.hooks import Steer, steering_hooks
from traitflow.steering.run import run_baseline, run_trait
from traitflow.steering.table import SENSE, steering_table, summary

TRAITS = ("refusal", "sycophancy", "uncertainty")
DEMO_MODEL = os.path.join(REPO, "models", "traitflow-demo-chat")


def demo_config(**overrides):
    """config.yaml + the demo experiment's own settings (+ overrides), completed with the schema's defaults."""
    with open(os.path.join(REPO, "experiments", "demo", "config.yaml")) as fh:
        return make_config(**deep_update(yaml.safe_load(fh), overrides))


@pytest.fixture(scope="module")
def demo(demo_run):
    """The demo model, its steering prompts and settings, and the mean_diff vectors the demo build extracted."""
    config = demo_config()
    s, gen = config["steering"], config["generation"]
    model, tokenizer = load_model(DEMO_MODEL, "cpu", "float32", eager=False), load_tokenizer(DEMO_MODEL)
    with open(os.path.join(REPO, s["prompts_file"])) as fh:
        records = json.load(fh)["prompts"]
    prompts = {f"prompt_{i}": {"id": r["id"], "text": r["text"], "labels": r["labels"],
                               "ids": encode_prompt(tokenizer, r["text"], True)} for i, r in enumerate(records)}
    vectors = os.path.join(demo_run["dir"], "experiments", "demo", "{trait}", "extraction", "vectors")
    units = {}
    for trait in TRAITS:
        for layer in s["layers"]:
            v = torch.load(os.path.join(vectors.format(trait=trait), f"mean_diff_layer{layer}.pt"), weights_only=True)
            units[trait, layer] = v.float() / v.float().norm()
    return {"model": model, "tokenizer": tokenizer, "s": s, "prompts": prompts, "units": units,
            "stop": stop_ids(model, tokenizer), "gen": {**gen, "temperature": 0.0},
            "batching": {"batch_size": s["batch_size"], "token_budget": None}}


@pytest.fixture(scope="module")
def demo_table(demo):
    """The demo's steering, run as the workflow runs it (every trait, layer, ratio, direction and control)."""
    from traitflow.steering.behaviour import make_classifier

    d, s = demo, demo["s"]
    keys = list(d["prompts"])
    base = run_baseline(d["model"], [d["prompts"][k]["ids"] for k in keys], d["stop"], d["gen"], d["batching"])
    records = []
    for trait in TRAITS:
        chosen = {direction: [k for k in keys if d["prompts"][k]["labels"].get(trait) is (direction == "subtract")]
                  for direction in s["directions"]}
        settings = {**s, "prompts": chosen, "residual_norm": base["residual_norm"]}
        result = run_trait(d["model"], lambda ids: d["tokenizer"].decode(ids, skip_special_tokens=True), trait,
                           {l: d["units"][trait, l] for l in s["layers"]}, settings, d["prompts"],
                           dict(zip(keys, base["responses"])), make_classifier(s["behaviour"][trait], trait),
                           d["stop"], d["gen"], d["batching"])
        records.append({"trait": trait, "method": "mean_diff", "vector_layer": 2, **result})
    return steering_table(records, s["max_nll_increase"], s["min_distinct2"])


def test_every_demo_vector_causes_its_behaviour_at_the_chosen_ratio_and_a_random_direction_does_not(demo, demo_table):
    """Per trait and direction, at the steered layer with the largest net change (vector less random control)."""
    s, rates = demo["s"], summary(demo_table)
    for trait in TRAITS:
        for direction in ("add", "subtract"):
            part = rates[(rates.trait == trait) & (rates.direction == direction)]
            picks = []
            for layer in s["layers"]:
                at = part[(part.layer == layer) & part.chosen]
                assert set(at.control) == {"vector", "random"}, f"{trait} {direction} layer {layer}: nothing chosen"
                vec, rnd = (at[at.control == c].iloc[0] for c in ("vector", "random"))
                base = part[(part.layer == layer) & (part.control == "none")].iloc[0]
                net = SENSE[direction] * ((vec.behaviour - base.behaviour) - (rnd.behaviour - base.behaviour))
                picks.append((net, layer, vec, rnd, base))
            _, layer, vec, rnd, base = max(picks, key=lambda p: p[0])
            where = f"{trait} {direction} at layer {layer}, ratio {vec.ratio}"
            assert vec.nll - base.nll <= s["max_nll_increase"] and vec.distinct2 >= s["min_distinct2"], where
            if direction == "add":
                assert base.behaviour <= 0.2 and vec.behaviour >= 0.8 and rnd.behaviour <= 0.2, where
            else:
                assert base.behaviour >= 0.8 and vec.behaviour <= 0.2, where  # removed from >= 80% of targets
            rows = demo_table[(demo_table.trait == trait) & (demo_table.layer == layer)
                              & (demo_table.direction == direction) & demo_table.chosen]
            assert len(rows) == 2 * 12 and (rows.perturbation_ratio - vec.ratio).abs().max() < 1e-9


def uncached(model, row, stop, max_new_tokens):
    """The oracle: greedy decoding that recomputes the whole sequence at every step, steered by the same hook."""
    ids, width = list(row.prompt_ids), len(row.prompt_ids)
    on = {"all": (True, True), "prompt": (True, False), "response": (False, True)}[row.position]
    delta = {row.layer: row.delta[None]} if row.delta is not None else {}
    steer = Steer(delta, row.ablate[None] if row.ablate is not None else None)
    out = []
    with torch.no_grad(), steering_hooks(model, steer):
        for _ in range(max_new_tokens):
            steer.where = torch.tensor([[on[0] if t < width else on[1] for t in range(len(ids))]])
            nxt = int(model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1].argmax())
            if nxt in stop:
                break
            out.append(nxt)
            ids.append(nxt)
    return out


def oracle_rows(demo):
    """Prompts of different lengths (left padding) under every kind of intervention, and none."""
    keys = ["prompt_0", "prompt_30", "prompt_65"]
    norm = 17.0  # about the demo's layer-1 mean residual norm
    u = demo["units"]["refusal", 1]
    kinds = [dict(layer=1, delta=1.5 * norm * u, position="all"),
             dict(layer=1, delta=1.5 * norm * u, position="prompt"),
             dict(layer=2, delta=-1.25 * norm * demo["units"]["uncertainty", 2], position="response"),
             dict(ablate=u, position="all"), {}]
    return [Row(demo["prompts"][k]["ids"], **kind) for k in keys for kind in kinds]


def test_steered_generation_under_the_kv_cache_equals_recomputing_every_step(demo):
    rows = oracle_rows(demo)[::3]  # every kind of intervention once, on each prompt
    cached = steered_generate(demo["model"], rows, demo["stop"], 24, batch_size=len(rows))
    assert [uncached(demo["model"], row, demo["stop"], 24) for row in rows] == cached
    assert len({tuple(c) for c in cached}) > len(rows) // 2  # the interventions do change the responses


def test_batched_steered_generation_with_left_padding_equals_one_row_at_a_time(demo):
    rows = oracle_rows(demo)
    assert len({len(r.prompt_ids) for r in rows}) > 1
    batched = steered_generate(demo["model"], rows, demo["stop"], 24, batch_size=len(rows))
    assert batched == [steered_generate(demo["model"], [row], demo["stop"], 24, batch_size=1)[0] for row in rows]


def test_ratio_zero_is_the_unsteered_response(demo):
    keys = list(demo["prompts"])[::6]
    ids = [demo["prompts"][k]["ids"] for k in keys]
    rows = [Row(i, layer=1, delta=0.0 * demo["units"]["refusal", 1]) for i in ids]
    assert steered_generate(demo["model"], rows, demo["stop"], 24) == generate(demo["model"], ids, demo["stop"], 24)


# ---- the workflow: incremental reruns (dry runs on a copy of the session's demo build) ----------------


def test_a_changed_vector_reruns_its_trait_only_and_a_new_ratio_keeps_the_baselines(demo_copy):
    """(A no-op, steering included, schedules nothing: tests/test_incremental.py checks it on the same build.)"""
    steering = ["steering_baseline", "steer", "steering_table", "report_steering"]
    config = os.path.join(demo_copy, "experiments", "demo", "config.yaml")
    with open(config) as fh:
        exp = yaml.safe_load(fh)
    date_back(demo_copy)
    vector = os.path.join(demo_copy, "experiments", "demo", "refusal", "extraction", "vectors",
                          f"mean_diff_layer{exp['steering']['layers'][0]}.pt")
    torch.save(torch.load(vector, weights_only=True) * 2, vector)
    assert dry_run(demo_copy) == {"steer": 1, "steering_table": 1, "report_steering": 1, "all": 1}
    exp["steering"]["ratios"] = exp["steering"]["ratios"] + [0.25]
    with open(config, "w") as fh:
        yaml.safe_dump(exp, fh)
    jobs = dry_run(demo_copy)
    assert {r: jobs.get(r, 0) for r in steering} == {"steering_baseline": 0, "steer": 3, "steering_table": 1,
                                                       "report_steering": 1}


def test_the_demo_build_writes_the_steering_table_and_a_figure_per_trait(demo_run):
    import pandas as pd

    exp = os.path.join(demo_run["dir"], "experiments", "demo")
    table = pd.read_parquet(os.path.join(exp, "tables", "steering.parquet"))
    assert {"trait", "layer", "direction", "position", "ratio", "coefficient", "control", "behaviour", "read_back",
            "nll", "distinct2", "chosen"} <= set(table.columns)
    steered = table[table.control != "none"]
    # the raw coefficient is the ratio times the layer's mean residual norm, signed by the direction
    expected = steered.ratio * steered.residual_norm * steered.direction.map(SENSE)
    assert (steered.coefficient - expected).abs().max() < 1e-9
    with open(os.path.join(exp, "inference", "steering", "baseline.json")) as fh:
        baseline = json.load(fh)
    for trait in TRAITS:
        with open(os.path.join(exp, trait, "steering", "responses.json")) as fh:
            record = json.load(fh)
        assert record["layer_convention"].startswith("layer L is the output of decoder layer L")
        assert {c["layer"] for c in record["conditions"]} <= set(range(4))
        unsteered = {p["key"]: p["response"] for p in baseline["prompts"]}
        assert all(b["response"] == unsteered[b["key"]] for b in record["baseline"])
        assert os.path.getsize(os.path.join(exp, "report", "steering", f"{trait}.png")) > 1000


# ---- bad input: one line naming the setting and the fix -------------------------------------------


def plan_error(monkeypatch, **steering):
    from traitflow.plan.workflow import check_config, make_plan
    from traitflow.steering.plan import plan_steering

    monkeypatch.chdir(REPO)  # the plan reads experiments/demo and the demo model (read only)
    with open(os.path.join(REPO, "config.yaml")) as fh:
        raw = yaml.safe_load(fh)
    with open(os.path.join(REPO, "experiments", "demo", "config.yaml")) as fh:
        deep_update(raw, yaml.safe_load(fh))
    raw["steering"].update(steering)
    with pytest.raises(TraitflowError) as err:
        check_config(raw, os.path.join(REPO, "schemas", "config.schema.yaml"))
        plan = make_plan(demo_config(steering=steering))
        plan_steering(plan.settings.steering, plan)
    return str(err.value)


def test_bad_steering_settings_are_one_line_naming_the_setting_and_the_fix(tmp_path, monkeypatch):
    msg = plan_error(monkeypatch, ratios=[])
    assert "key steering.ratios" in msg and "a non-empty list of ratios >= 0" in msg
    assert "fix: set steering.ratios" in msg
    msg = plan_error(monkeypatch, ratios=[1, -0.5])
    assert "key steering.ratios.1: -0.5 is out of range for a ratio >= 0" in msg
    assert plan_error(monkeypatch, layers=[7]) == (
        "config steering.layers: [7] do not exist (the model has layers 0-3); "
        "fix: pick from those, or [] for each trait's vector layer")
    msg = plan_error(monkeypatch, behaviour={"refusal": {"patterns": ["can't", "(sorry"]}})
    assert msg.startswith("config steering.behaviour.refusal.patterns[1]: '(sorry' does not compile")
    assert "fix: write a Python regular expression" in msg
    labelled = tmp_path / "prompts.json"
    labelled.write_text(json.dumps({"prompts": [{"text": "How do I bake bread?", "labels": {"refusal": False}},
                                                {"text": "How do I make a bomb?", "labels": {"refusal": True}}]}))
    msg = plan_error(monkeypatch, prompts_file=str(labelled), traits=["refusal", "sycophancy"])
    assert msg.startswith("config steering.traits: trait 'sycophancy' has no prompt of ")
    assert "labelled sycophancy: false to add; fix: label some prompts {sycophancy: false}" in msg
    assert "\n" not in msg


def test_steering_every_trait_leaves_out_one_without_labelled_prompts_with_a_warning(tmp_path, monkeypatch, capsys):
    from traitflow.plan.workflow import make_plan
    from traitflow.steering.plan import plan_steering

    monkeypatch.chdir(REPO)
    labelled = tmp_path / "prompts.json"
    labelled.write_text(json.dumps({"prompts": [{"text": "How do I bake bread?", "labels": {"refusal": False}},
                                                {"text": "How do I make a bomb?", "labels": {"refusal": True}}]}))
    plan = make_plan(demo_config(steering={"prompts_file": str(labelled)}))
    assert list(plan_steering(plan.settings.steering, plan)["traits"]) == ["refusal"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "steering leaves" in line]
    assert [w.split("'")[1] for w in warnings] == ["sycophancy", "uncertainty"]


# ---- a real model: SmolLM2-135M-Instruct (never refuses, yet its refusal direction is causal) -------------


def test_smollm2_refusal_direction_moves_the_read_back_at_least_twice_as_far_as_a_random_one(smollm2_dir):
    """The direction is rebuilt here from a plain forward pass (the last prompt token's residual_out at the
    experiment's vector layer, harmful minus harmless requests), then added on harmless requests."""
    with open(os.path.join(REPO, "experiments", "smollm2", "config.yaml")) as fh:
        layer = yaml.safe_load(fh)["vector"]["layer"]
    model, tokenizer = load_model(smollm2_dir, "cpu", "float32", eager=False), load_tokenizer(smollm2_dir)
    folder = os.path.join(REPO, "experiments", "smollm2", "refusal", "extraction")

    def mean_last(name):
        with open(os.path.join(folder, name)) as fh:
            texts = fh.read().splitlines()[:12]
        with torch.no_grad():
            return torch.stack([model(input_ids=torch.tensor([encode_prompt(tokenizer, t, True)]),
                                      output_hidden_states=True).hidden_states[layer + 1][0, -1]
                                for t in texts]).mean(0)

    v = mean_last("positive.txt") - mean_last("negative.txt")
    with open(os.path.join(REPO, "experiments", "smollm2", "inference_prompts.json")) as fh:
        harmless = [p for p in json.load(fh)["prompts"] if p["labels"].get("refusal") is False][:3]
    prompts = {f"p{i}": {"id": p["id"], "ids": encode_prompt(tokenizer, p["text"], True)}
               for i, p in enumerate(harmless)}
    stop, gen = stop_ids(model, tokenizer), {"max_new_tokens": 16, "temperature": 0.0, "top_p": 1.0, "seed": 0}
    batching = {"batch_size": 16, "token_budget": None}
    base = run_baseline(model, [q["ids"] for q in prompts.values()], stop, gen, batching)
    config = make_config()["steering"]
    settings = {**config, "ratios": [0.25, 0.5], "directions": ["add"], "prompts": {"add": list(prompts)},
                "residual_norm": base["residual_norm"]}
    result = run_trait(model, lambda ids: tokenizer.decode(ids, skip_special_tokens=True), "refusal",
                       {layer: v / v.norm()}, settings, prompts, dict(zip(prompts, base["responses"])), None,
                       stop, gen, batching)
    rates = summary(steering_table([{"trait": "refusal", "method": "mean_diff", "vector_layer": layer, **result}],
                                   config["max_nll_increase"], config["min_distinct2"]))
    at = rates[rates.chosen].set_index("control")
    unsteered = rates[rates.control == "none"].read_back.iloc[0]
    shift, random_shift = at.read_back["vector"] - unsteered, at.read_back["random"] - unsteered
    assert shift > 0 and shift >= 2 * abs(random_shift), (shift, random_shift)

"""Dynamics metrics against a direct computation written here, and the dynamics rule against its oracles."""

import glob
import json
import os
import re

import numpy as np
import pytest
import torch
import yaml

from conftest import date_back, dry_run, snakemake
from traitflow import SUBLAYERS
from traitflow.outputs.dynamics import DECIMALS, DEFAULT_SETTINGS, dynamics_record, metrics
from traitflow.plan.dynamics_plan import plan_dynamics, resolve_methods
from traitflow.core.errors import TraitflowError
from traitflow.plan.workflow import Plan, TraitPlan

EXP = "experiments/demo"
TRAITS = ["refusal", "sycophancy", "uncertainty"]


# --- the oracle: the definitions of the README, one loop at a time ---------------------------------

def ref_commitment(span, fraction, min_tokens, window):
    """(offset into the span or None, absolute threshold): windows summed and tested one at a time."""
    h = (window - 1) // 2
    sm = [sum(span[j + i] for i in range(window)) / window for j in range(len(span) - window + 1)]
    acc = [sm[k + 2] - 2 * sm[k + 1] + sm[k] for k in range(len(sm) - 2)]
    if not acc:
        return None, None
    threshold = max(fraction * max(abs(a) for a in acc), 1e-6 * (max(sm) - min(sm)))
    for c in range(len(acc)):
        if all(abs(acc[k]) <= threshold for k in range(c, len(acc))):
            if c == 0:
                return 0, threshold  # never bends: committed from the span's first token
            return (c + h if len(sm) - c >= min_tokens else None), threshold
    return None, threshold


def ref_dynamics(s, fraction, persistence_fraction, start=0, min_tokens=5, window=1):
    """Metrics over s[start:], indices into s; written without numpy's diff, argmax or convolve."""
    n = len(s)
    vel = [s[i + 1] - s[i] for i in range(n - 1)]
    acc = [s[i + 2] - 2 * s[i + 1] + s[i] for i in range(n - 2)]
    span_vel = [(i + 1, vel[i]) for i in range(start, n - 1)]
    out = {"velocity": vel, "acceleration": acc, "peak_velocity": None, "peak_velocity_index": None,
           "mean_abs_velocity": None, "peak": None, "commitment_point": None,
           "persistence": {"count": 0, "longest_run": 0, "threshold": None}}
    if span_vel:
        best = span_vel[0]
        for idx, v in span_vel:
            if abs(v) > abs(best[1]):
                best = (idx, v)
        out["peak_velocity_index"], out["peak_velocity"] = best
        out["mean_abs_velocity"] = sum(abs(v) for _, v in span_vel) / len(span_vel)
    if n > start:
        peak = start
        for i in range(start, n):
            if abs(s[i]) > abs(s[peak]):
                peak = i
        out["peak"] = {"index": peak, "score": s[peak]}
        thr = persistence_fraction * s[peak]
        hits = [(s[i] > thr if s[peak] > 0 else s[i] < thr) if s[peak] != 0 else False for i in range(peak + 1, n)]
        runs, run = [0], 0
        for h in hits:
            run = run + 1 if h else 0
            runs.append(run)
        out["persistence"] = {"count": sum(hits), "longest_run": max(runs), "threshold": thr}
    c, out["commitment_score_threshold"] = ref_commitment(list(s[start:]), fraction, min_tokens, window)
    if c is not None:
        out["commitment_point"] = {"index": start + c}
    return out


def assert_matches_oracle(s, threshold=0.1, fraction=0.5, start=0, min_tokens=5, window=1):
    got = metrics(s, threshold, fraction, start, commitment_min_tokens=min_tokens, smoothing=window)
    want = ref_dynamics([float(x) for x in s], threshold, fraction, start, min_tokens, window)
    np.testing.assert_allclose(got["velocity"], want["velocity"], atol=1e-12)
    np.testing.assert_allclose(got["acceleration"], want["acceleration"], atol=1e-12)
    for key in ("peak_velocity", "peak_velocity_index", "mean_abs_velocity", "commitment_score_threshold"):
        assert got[key] == (None if want[key] is None else pytest.approx(want[key], rel=1e-9, abs=1e-12)), key
    assert got["peak"] == pytest.approx(want["peak"])
    assert (got["commitment_point"] or {}).get("index") == (want["commitment_point"] or {}).get("index")
    assert got["persistence"] == pytest.approx(want["persistence"])
    return got


def ramp_plateau(ramp, plateau, slope=1.0, offset=0.0):
    """A straight climb over ramp tokens, then flat: the plateau starts at token `ramp`."""
    return [offset + slope * min(t, ramp) for t in range(ramp + plateau)]


# --- scale-free commitment ---------------------------------------------------------------------------

@pytest.mark.parametrize("ramp", [2, 5, 12, 40])
@pytest.mark.parametrize("scale", [1.0, 100.0, 0.01, -37.5])
def test_a_ramp_then_a_plateau_commits_at_the_plateaus_start_whatever_the_scale(ramp, scale):
    s = np.array(ramp_plateau(ramp, 15, offset=0.3)) * scale
    got = assert_matches_oracle(s.tolist())
    assert got["commitment_point"]["index"] == ramp
    # the threshold in score units moves with the scores (1 is the unscaled bend at the knee)
    assert got["commitment_score_threshold"] == pytest.approx(0.1 * abs(scale))


def test_x1_and_x100_give_the_same_index_where_a_raw_threshold_would_not():
    rng = np.random.default_rng(3)
    base = np.array(ramp_plateau(6, 14)) + rng.normal(scale=0.002, size=20)  # a faint wobble on the plateau
    small, large = metrics(base, 0.1, 0.5), metrics(100 * base, 0.1, 0.5)
    assert small["commitment_point"]["index"] == large["commitment_point"]["index"] == 6
    # what the old raw-units rule (|acceleration| < 0.1 score units) made of the same shapes:
    raw = [next((c for c in range(18) if np.all(np.abs(np.diff(x, 2)[c:]) < 0.1)), None) for x in (base, 100 * base)]
    assert raw == [6, None]  # x100: the wobble's bends (~0.5) are over 0.1 score units, so never settled


def test_noise_alone_does_not_commit():
    rng = np.random.default_rng(0)
    for n in (10, 24, 100, 500):
        for scale in (1e-3, 1.0, 1e3):
            committed = [metrics(rng.normal(size=n) * scale, 0.1, 0.5)["commitment_point"] for _ in range(200)]
            assert sum(c is not None for c in committed) <= 10, (n, scale)  # ~1-3% by chance, never the rule


def test_smoothing_sees_through_a_wiggle():
    # a period-3 wiggle (+e, +e, -2e: zero mean over any 3 tokens) over a ramp then a plateau
    wiggle = [0.4, 0.4, -0.8]
    s = [v + wiggle[t % 3] for t, v in enumerate(ramp_plateau(9, 21, slope=2.0))]
    assert assert_matches_oracle(s)["commitment_point"] is None  # the wiggle's bends never settle
    # smoothed over 3 tokens the wiggle is gone; the turn at 9 is blurred by a half window: 9 + 1
    assert assert_matches_oracle(s, window=3)["commitment_point"]["index"] == 10
    assert assert_matches_oracle(ramp_plateau(9, 21), window=5)["commitment_point"]["index"] == 11


@pytest.mark.parametrize("knee", [3, 5, 8])
def test_commitment_is_where_a_curve_turns_into_a_straight_line(knee):
    # s[t] = t^2 up to the knee, then a straight line: every second difference built
    # from tokens >= knee is 0, the one straddling the knee is 1, the ones before 2.
    s = [t * t if t <= knee else knee * knee + 2 * knee * (t - knee) for t in range(knee + 6)]
    tokens = [f"tok{t}" for t in range(len(s))]
    got = assert_matches_oracle(s)
    assert got["commitment_point"]["index"] == knee
    assert metrics(s, 0.1, 0.5, tokens=tokens)["commitment_point"]["token"] == tokens[knee]
    # a threshold at half the sharpest bend (2) lets the knee's bend (1) pass: one token earlier
    assert assert_matches_oracle(s, threshold=0.5)["commitment_point"]["index"] == knee - 1


def test_commitment_is_null_when_acceleration_never_settles():
    s = [0, 1, 0, 1, 0, 1, 0]
    assert assert_matches_oracle(s)["commitment_point"] is None
    # settled everywhere but at the very end: still never committed
    assert metrics([0, 0, 0, 0, 5], 0.1, 0.5)["commitment_point"] is None


def test_a_settled_stretch_shorter_than_min_tokens_is_no_commitment():
    s = ramp_plateau(8, 4)  # the plateau holds 4 tokens
    assert assert_matches_oracle(s, min_tokens=5)["commitment_point"] is None
    assert assert_matches_oracle(s, min_tokens=4)["commitment_point"]["index"] == 8


@pytest.mark.parametrize("s", [[], [2.0], [1.0, -3.0]])
def test_fewer_than_three_tokens(s):
    got = assert_matches_oracle(s)
    assert got["acceleration"] == [] and got["commitment_point"] is None and got["commitment_score_threshold"] is None
    assert len(got["velocity"]) == max(len(s) - 1, 0)
    if len(s) < 2:
        assert got["peak_velocity"] is None and got["mean_abs_velocity"] is None
    if not s:
        assert got["peak"] is None
    if len(s) == 2:
        assert got["peak"] == {"index": 1, "score": -3.0}  # the larger magnitude, negative
        assert got["peak_velocity"] == -4.0 and got["peak_velocity_index"] == 1


@pytest.mark.parametrize("window", [1, 3, 4])
def test_flat_and_straight_scores_are_committed_from_the_start(window):
    got = assert_matches_oracle([1.5] * 6, window=window)
    assert got["commitment_point"]["index"] == 0 and got["commitment_score_threshold"] == 0.0
    line = np.round(np.arange(8) / 3 + 100, 6)  # rounded like the JSON's scores: bends of ~1e-6 are no bends
    assert assert_matches_oracle(line.tolist(), start=2, window=window)["commitment_point"]["index"] == 2


def test_flat_scores_persist():
    got = assert_matches_oracle([1.5] * 6)
    assert got["velocity"] == [0.0] * 5 and got["peak_velocity"] == 0.0 and got["mean_abs_velocity"] == 0.0
    assert got["peak"]["index"] == 0  # ties go to the first token
    assert got["persistence"]["count"] == got["persistence"]["longest_run"] == 5


def test_all_zero_scores_have_no_persistence():
    got = assert_matches_oracle([0.0] * 5)
    assert got["peak"] == {"index": 0, "score": 0.0}
    assert got["persistence"] == {"count": 0, "longest_run": 0, "threshold": 0.0}


def test_negative_peak_counts_persistence_on_its_own_side():
    s = [0.0, -1.0, -5.0, -3.0, -4.0, 1.0, 4.0, -2.6, -2.7]
    got = assert_matches_oracle(s)
    assert got["peak"] == {"index": 2, "score": -5.0}
    assert got["persistence"]["threshold"] == -2.5
    # -3, -4 (run of 2), then +1, +4 swing to the other side (not counted), then -2.6, -2.7
    assert (got["persistence"]["count"], got["persistence"]["longest_run"]) == (4, 2)
    assert got["peak_velocity"] < 0  # signed: the largest change is the drop from 4.0 to -2.6


def test_response_span_ignores_the_prompt():
    prompt = [40.0, -3.0, 1.0]  # a huge BOS-like score that would own the peak and the sharpest bend
    response = ramp_plateau(4, 8, slope=0.5, offset=0.5)
    for window in (1, 3):
        got = assert_matches_oracle(prompt + response, start=len(prompt), window=window)
        alone = metrics(response, 0.1, 0.5, smoothing=window)
        assert got["peak"]["index"] == len(prompt) + alone["peak"]["index"]
        assert got["peak_velocity"] == alone["peak_velocity"]
        assert got["commitment_point"]["index"] == len(prompt) + alone["commitment_point"]["index"]
        assert got["commitment_score_threshold"] == alone["commitment_score_threshold"]


def test_random_sequences_match_the_oracle():
    rng = np.random.default_rng(0)
    for n in range(0, 40):
        for _ in range(3):
            s = np.cumsum(rng.normal(size=n)) * rng.choice([-1, 1]) * 10.0 ** rng.integers(-3, 4)
            s[rng.random(n) < 0.3] = 0.0
            if n and rng.random() < 0.4:  # some with a long settled tail, so commitments occur
                s[n // 2:] = s[n // 2]
            assert_matches_oracle(s.tolist(), threshold=float(rng.uniform(0.01, 0.9)), fraction=float(rng.uniform(0, 1)),
                                  start=int(rng.integers(0, n + 1)), min_tokens=int(rng.integers(3, 7)),
                                  window=int(rng.integers(1, 6)))


def test_the_record_keeps_its_layout_and_states_its_settings():
    response = {"prompt_index": 4,
                "prompt": {"text": "p", "tokens": ["<bos>", "a"], "token_ids": [1, 2], "n_tokens": 2},
                "response": {"text": "r", "tokens": list("bcdefghijk"), "token_ids": list(range(3, 13)), "n_tokens": 10}}
    scores = {"probe": [9.0, 0.0] + [250.0 * min(t, 3) for t in range(10)]}
    old_style = dynamics_record("t", response, 1, "residual_out", "response", scores,
                                {"commitment_threshold": 0.1, "persistence_fraction": 0.5}, {"model": "m"})
    assert old_style["prompt_set"] == "default"  # a response without a set is the default set's
    assert set(old_style) == {"trait", "prompt_set", "prompt_index", "prompt_text", "response_text", "tokens", "token_ids",
                              "n_prompt", "n_response", "layer", "point", "span", "span_start", "scores",
                              "dynamics", "metadata"}
    dyn = old_style["dynamics"]["probe"]
    assert dyn["commitment_point"] == {"index": 5, "token": "e"}  # response token 3: the plateau's start
    assert dyn["commitment_score_threshold"] == pytest.approx(25.0)  # 0.1 x the knee's bend of 250
    assert old_style["metadata"] == {"model": "m", **DEFAULT_SETTINGS,
                                     "commitment_threshold_unit": "fraction of the span's max |acceleration|"}
    smoothed = dynamics_record("t", response, 1, "residual_out", "response", scores,
                               {**DEFAULT_SETTINGS, "smoothing": 3}, {})
    assert smoothed["dynamics"]["probe"]["commitment_point"]["index"] == 6
    assert smoothed["metadata"]["smoothing"] == 3
    assert smoothed["dynamics"]["probe"]["velocity"] == dyn["velocity"]  # velocity stays unsmoothed


# --- method resolution (parse time) -----------------------------------------------------------------

def fake_plan(tmp_path, extract, files=()):
    vectors = tmp_path / "experiments/x/t/extraction/vectors"
    vectors.mkdir(parents=True)
    for name in files:
        (vectors / name).write_bytes(b"")
    plan = Plan(experiment="x", exp_dir=str(tmp_path / "experiments/x"), model="m", model_path="m", model_files=[],
                n_layers=4, prompts=["p"], shards=[[0]])
    trait = TraitPlan(name="t", extract=extract, method="probe", layer=2, vector_path=str(vectors / "probe_layer2.pt"))
    return plan, trait, str(vectors)


def test_auto_is_the_traits_own_method_and_reuses_its_capture(tmp_path):
    plan, trait, vectors = fake_plan(tmp_path, extract=True)
    layer, methods = resolve_methods(plan, trait, ["auto", "probe", "mean_diff"], None)
    assert layer == trait.layer
    assert methods == [{"method": "probe", "vector": trait.vector_path, "reuse": True},
                       {"method": "mean_diff", "vector": f"{vectors}/mean_diff_layer2.pt", "reuse": False}]


def test_a_method_without_a_vector_is_a_clear_error(tmp_path):
    plan, trait, _ = fake_plan(tmp_path, extract=False, files=["probe_layer2.pt", "ica_layer1.pt"])
    with pytest.raises(TraitflowError, match=r"'ica'.*no vector at layer 2.*dynamics.methods"):
        resolve_methods(plan, trait, ["auto", "ica"], None)
    with pytest.raises(TraitflowError, match="dynamics.layer"):
        resolve_methods(plan, trait, ["auto"], 4)


def test_a_method_missing_for_one_trait_leaves_only_that_traits_dynamics_without_it(tmp_path, capsys):
    plan, extracted, vectors = fake_plan(tmp_path, extract=True)
    brought = TraitPlan(name="u", method="probe", layer=2, vector_path=f"{tmp_path}/experiments/x/u/probe_layer2.pt")
    plan.traits = {"t": extracted, "u": brought}
    planned = plan_dynamics(plan, {"methods": ["auto", "mean_diff"], "layer": None})
    assert [m["method"] for m in planned["t"]["methods"]] == ["probe", "mean_diff"]
    assert [m["method"] for m in planned["u"]["methods"]] == ["probe"]
    assert "dynamics method 'mean_diff' of trait 'u' has no vector" in capsys.readouterr().err
    plan.traits = {"u": brought}  # no trait has it: a config mistake, one clear error
    with pytest.raises(TraitflowError, match="'mean_diff' of trait 'u'"):
        plan_dynamics(plan, {"methods": ["auto", "mean_diff"], "layer": None})


# --- the workflow's dynamics files ------------------------------------------------------------------

def dynamics_files(workdir, trait):
    paths = glob.glob(os.path.join(workdir, EXP, trait, "inference/dynamics/prompt_*.json"))
    return sorted(paths, key=lambda p: int(re.search(r"prompt_(\d+)", p)[1]))


def load(path):
    with open(path) as fh:
        return json.load(fh)


def shard_count(workdir):
    return len(glob.glob(os.path.join(workdir, "manifests/demo/_shared/capture_shard*.json")))


def test_scores_are_the_captures_projections_and_method_scores(demo_run):
    for trait in TRAITS:
        paths = dynamics_files(demo_run["dir"], trait)
        assert len(paths) == 24  # the demo's prompts
        for path in paths:
            rec = load(path)
            cap = torch.load(path.replace("dynamics", "residual_stream_activations").replace(".json", ".pt"),
                             weights_only=True)
            method = cap["metadata"]["method"]
            assert rec["metadata"]["methods"][method]["source"].startswith("all-layers")
            proj = torch.cat([cap["projections"]["prompt"], cap["projections"]["response"]]).numpy()
            np.testing.assert_allclose(rec["scores"][method], proj[:, rec["layer"], SUBLAYERS.index(rec["point"])],
                                       atol=1e-6, rtol=0)
            np.testing.assert_allclose(rec["scores"]["mean_diff"], cap["method_scores"]["mean_diff"].numpy(),
                                       atol=1e-6, rtol=0)
            assert rec["tokens"] == cap["prompt"]["tokens"] + cap["response"]["tokens"]
            assert rec["n_prompt"] == cap["prompt"]["n_tokens"]


def test_mean_diff_scores_equal_hidden_states_times_unit_vector(demo_run):
    from transformers import AutoModelForCausalLM

    workdir = demo_run["dir"]
    model = AutoModelForCausalLM.from_pretrained(os.path.join(workdir, "models/traitflow-demo-chat"),
                                                 dtype=torch.float32).eval()
    for trait in TRAITS:
        for path in dynamics_files(workdir, trait)[::3]:
            rec = load(path)
            assert rec["point"] == "residual_out" and rec["layer"] + 1 < model.config.num_hidden_layers
            vector = torch.load(os.path.join(workdir, rec["metadata"]["methods"]["mean_diff"]["vector"]),
                                weights_only=True).numpy().astype(np.float64)
            with torch.no_grad():
                out = model(input_ids=torch.tensor([rec["token_ids"]]), output_hidden_states=True)
            # hidden_states[l + 1] is layer l's output (the last entry alone is normed)
            hidden = out.hidden_states[rec["layer"] + 1][0].numpy().astype(np.float64)
            np.testing.assert_allclose(rec["scores"]["mean_diff"], hidden @ (vector / np.linalg.norm(vector)),
                                       atol=1e-4, rtol=1e-5)


def test_json_metrics_are_those_of_its_scores(demo_run):
    committed = 0
    for trait in TRAITS:
        for path in dynamics_files(demo_run["dir"], trait):
            rec = load(path)
            assert set(rec["scores"]) == {"probe", "mean_diff"} == set(rec["dynamics"])
            meta = rec["metadata"]
            assert {k: meta[k] for k in DEFAULT_SETTINGS} == DEFAULT_SETTINGS  # the config's defaults, recorded
            start = rec["n_prompt"]  # the default span is the response
            for method, scores in rec["scores"].items():
                dyn = rec["dynamics"][method]
                want = ref_dynamics(scores, meta["commitment_threshold"], meta["persistence_fraction"], start,
                                    meta["commitment_min_tokens"], meta["smoothing"])
                np.testing.assert_allclose(dyn["velocity"], want["velocity"], atol=2e-6)
                assert dyn["peak"]["index"] == want["peak"]["index"]
                assert dyn["persistence"]["count"] == want["persistence"]["count"]
                # the record rounds to DECIMALS places: absolute, as the trained demo's thresholds are small
                assert dyn["commitment_score_threshold"] == pytest.approx(want["commitment_score_threshold"], rel=1e-5,
                                                                          abs=10 ** -DECIMALS)
                assert (dyn["commitment_point"] or {}).get("index") == (want["commitment_point"] or {}).get("index")
                if dyn["commitment_point"]:
                    committed += 1
                    assert dyn["commitment_point"]["token"] == rec["tokens"][dyn["commitment_point"]["index"]]
    print(f"{committed} of {len(TRAITS) * 24 * 2} demo trajectories have a commitment point")


# --- incremental behaviour --------------------------------------------------------------------------

def scheduled(workdir, *args):
    """[(rule, trait or None)] of a dry run."""
    out = snakemake(workdir, "-n", "--quiet", "host", *args).stdout
    jobs = []  # a job is a "rule NAME:" line and the indented lines under it
    for line in out.splitlines():
        rule = re.match(r"(?:local)?rule (\S+):$", line)
        trait = re.match(r"    wildcards: .*trait=([^,\s]+)", line)
        if rule:
            jobs.append((rule[1], None))
        elif trait and jobs:
            jobs[-1] = (jobs[-1][0], trait[1])
    return jobs


def touch_vector(workdir, trait, name):
    path = os.path.join(workdir, EXP, trait, "extraction/vectors", name)
    date_back(workdir)
    torch.save(-torch.load(path, weights_only=True), path)


def test_changing_one_traits_vector_reruns_capture_and_dynamics_never_generation(demo_copy):
    touch_vector(demo_copy, "sycophancy", "probe_layer2.pt")
    jobs = scheduled(demo_copy)
    rules = [r for r, _ in jobs]
    n = shard_count(demo_copy)
    assert sorted(r for r in rules if r.startswith(("capture_shard", "dynamics_shard"))) == sorted(
        [f"capture_shard{k}" for k in range(n)] + [f"dynamics_shard{k}" for k in range(n)])
    assert rules.count("dynamics_tables") == 1
    assert not any(r.startswith(("generate", "extract")) for r in rules)


def test_changing_a_dynamics_only_vector_reruns_no_generation(demo_copy):
    touch_vector(demo_copy, "refusal", "mean_diff_layer2.pt")  # the capture pass scores it too
    counts = dry_run(demo_copy)
    assert not any(r.startswith(("generate", "extract")) for r in counts)
    assert sum(n for r, n in counts.items() if r.startswith("dynamics_shard")) == shard_count(demo_copy)
    assert counts["dynamics_tables"] == 1


@pytest.mark.parametrize("setting", [{"persistence_fraction": 0.8}, {"commitment_threshold": 0.2},
                                     {"commitment_min_tokens": 3}, {"smoothing": 3}])
def test_changing_a_metric_setting_reruns_dynamics_only(demo_copy, setting):
    with open(os.path.join(demo_copy, "metric.yaml"), "w") as fh:
        yaml.safe_dump({"dynamics": setting}, fh)
    counts = dry_run(demo_copy, "--configfile", "metric.yaml")
    assert not any(r.startswith(("capture", "generate", "extract")) for r in counts)
    assert sum(n for r, n in counts.items() if r.startswith("dynamics_shard")) == shard_count(demo_copy)


def test_dynamics_never_load_the_model(demo_copy):
    # The shipped weights are a user file: the plan fingerprints them (content, cached by size, date and
    # inode), and a changed byte reruns every model job. So break them in place, same size, inode and date,
    # after a plan has cached their fingerprint in this copy: loading the model would fail, nothing reruns.
    assert dry_run(demo_copy) == {}
    weights = os.path.join(demo_copy, "models/traitflow-demo-chat/model.safetensors")
    stat = os.stat(weights)
    with open(weights, "r+b") as fh:
        fh.seek(8)
        fh.write(b"#" * 16)  # the header is no longer JSON
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with open(os.path.join(demo_copy, "smooth.yaml"), "w") as fh:
        yaml.safe_dump({"dynamics": {"smoothing": 3}}, fh)
    target = f"{EXP}/uncertainty/inference/dynamics/prompt_0.json"
    snakemake(demo_copy, "--cores", "1", "--configfile", "smooth.yaml")  # every dynamics shard, tables, viewer
    rec = load(os.path.join(demo_copy, target))
    assert set(rec["scores"]) == {"probe", "mean_diff"} and rec["metadata"]["smoothing"] == 3


def test_a_method_with_no_vector_fails_the_plan_in_one_line(demo_copy):
    with open(os.path.join(demo_copy, "ica.yaml"), "w") as fh:
        yaml.safe_dump({"dynamics": {"methods": ["auto", "ica"]}}, fh)
    proc = snakemake(demo_copy, "-n", "--configfile", "ica.yaml", check=False)
    assert proc.returncode != 0
    assert re.search(r"traitflow \[plan\] error: .*dynamics method 'ica'.*fix:", proc.stdout)

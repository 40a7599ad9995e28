"""Export to the original layout: one command writes the original nested tree that its scripts and viewer read.

The checks below are our reading of the original's own verifiers (inference/verify_all_layers_format.py
and verify_single_layer_format.py at commit 069fa70): the keys, shapes and per-token attention it
required, applied to the exported .pt and its .json mirror.
"""

import os
import shutil
import subprocess
import sys

import torch
from conftest import REPO

from traitflow.core.formats import load_json, load_pt, save_pt

SCRIPT = os.path.join(REPO, "scripts", "export_seed_format.py")
ALL_LAYERS = "inference/residual_stream_activations"


def shape(x):
    """Shape of a tensor or of nested lists (the .json mirror)."""
    if isinstance(x, torch.Tensor):
        return tuple(x.shape)
    return (len(x), *shape(x[0])) if isinstance(x, list) and x else (len(x),) if isinstance(x, list) else ()


def original_all_layers_problems(data):
    """What the original's all-layers verifier refused, as a list (empty: it passes)."""
    missing = [k for k in ("prompt", "response", "projections", "attention_weights", "metadata") if k not in data]
    if missing:
        return [f"top-level keys {missing}"]
    problems = [f"{side} keys" for side in ("prompt", "response")
                if not {"text", "tokens", "token_ids", "n_tokens"} <= set(data[side])]
    p, r = shape(data["projections"]["prompt"]), shape(data["projections"]["response"])
    if len(p) != 3 or p[2] != 3 or len(r) != 3 or r[2] != 3 or p[1] != r[1]:
        return problems + [f"projections {p} {r}"]
    n_layers = p[1]
    problems += [f"{side} projection rows" for side, s in (("prompt", p), ("response", r))
                 if s[0] != data[side]["n_tokens"]]
    layers = {f"layer_{i}" for i in range(n_layers)}
    attn = data["attention_weights"]
    if set(attn["prompt"]) != layers:
        problems.append("prompt attention layers")
    if not isinstance(attn["response"], list) or len(attn["response"]) != data["response"]["n_tokens"]:
        problems.append("response attention is not one entry per response token")
    elif attn["response"] and set(attn["response"][0]) != layers:
        problems.append("response attention layers")
    problems += [f"metadata {k}" for k in ("trait", "trait_display_name", "vector_path", "model", "capture_date",
                                           "temperature") if k not in data["metadata"]]
    return problems


def original_single_layer_problems(data):
    missing = [k for k in ("prompt", "response", "layer", "internals", "metadata") if k not in data]
    if missing:
        return [f"top-level keys {missing}"]
    problems = [] if isinstance(data["layer"], int) else ["layer is not an int"]
    for side in ("prompt", "response"):
        text = data[side]
        if not (len(text["tokens"]) == len(text["token_ids"]) == text["n_tokens"]):
            problems.append(f"{side} token counts")
        if not {"attention", "mlp", "residual"} <= set(data["internals"][side]):
            problems.append(f"{side} internals")
    return problems


def two_set_experiment(demo_run, root):
    """experiments/mix: the demo's default-set files, and prompt 3 of the demo filed as prompt 0 of set 'harmful'
    of trait behavioral/refusal, as a capture of a named set writes it (plan-wide index 3 in its metadata)."""
    src = os.path.join(demo_run["dir"], "experiments", "demo")
    exp = os.path.join(root, "experiments", "mix")
    shutil.copytree(os.path.join(src, "refusal", "inference"), os.path.join(exp, "refusal", "inference"))
    shutil.copytree(os.path.join(src, "inference", "shared"), os.path.join(exp, "inference", "shared"))
    shutil.copytree(os.path.join(src, "inference", "layer_internal_states"),
                    os.path.join(exp, "inference", "layer_internal_states"))
    record = load_pt(os.path.join(src, "refusal", ALL_LAYERS, "prompt_3.pt"))
    target = os.path.join(exp, "behavioral", "refusal", ALL_LAYERS, "harmful", "prompt_0.pt")
    shared = os.path.join(exp, "inference", "shared", "harmful", "prompt_0.safetensors")
    os.makedirs(os.path.dirname(shared))
    shutil.copy(os.path.join(src, "inference", "shared", "prompt_3.safetensors"), shared)
    record["metadata"].update(prompt_index=3, shared_file=os.path.relpath(shared, os.path.dirname(target)))
    save_pt(record, target)
    return exp


def export(root, *args):
    proc = subprocess.run([sys.executable, SCRIPT, *args], cwd=root, text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_an_experiment_exports_to_the_original_tree_that_its_verifier_accepts(demo_run, tmp_path):
    two_set_experiment(demo_run, str(tmp_path))
    proc = export(str(tmp_path), "--experiment", "mix", "--out", "out", "--prompt", "0")
    written = proc.stdout.split()
    assert sorted(written) == sorted(f"out/mix/{rel}.{ext}" for ext in ("pt", "json") for rel in (
        f"behavioral/refusal/{ALL_LAYERS}/harmful/prompt_0", f"refusal/{ALL_LAYERS}/prompt_0",
        *(f"refusal/inference/layer_internal_states/prompt_0_layer{layer}" for layer in (1, 2))))
    assert proc.stderr.strip() == "exported 4 capture file(s) as 8 file(s) under out"
    for path in written:
        full = os.path.join(tmp_path, path)
        data = load_pt(full) if path.endswith(".pt") else load_json(full)
        check = original_single_layer_problems if "layer_internal_states" in path else original_all_layers_problems
        assert check(data) == [], path
    harmful = load_pt(os.path.join(tmp_path, "out", "mix", "behavioral", "refusal", ALL_LAYERS, "harmful",
                                   "prompt_0.pt"))
    assert (harmful["metadata"]["prompt_index"], harmful["metadata"]["prompt_set"]) == (0, "harmful")  # set-local
    assert harmful["metadata"]["trait"] == "refusal"
    # the attention is the captured one: every response row sums to 1 over the tokens before it
    rows = harmful["attention_weights"]["response"]
    assert all(abs(float(rows[j]["layer_0"].sum()) - 1) < 1e-4 for j in range(len(rows)))


def test_a_selection_exports_only_what_was_chosen(demo_run, tmp_path):
    two_set_experiment(demo_run, str(tmp_path))
    proc = export(str(tmp_path), "--experiment", "mix", "--out", "out", "--set", "harmful", "--no-json")
    assert proc.stdout.split() == [f"out/mix/behavioral/refusal/{ALL_LAYERS}/harmful/prompt_0.pt"]
    proc = export(str(tmp_path), f"experiments/mix/refusal/{ALL_LAYERS}/prompt_2.pt", "--out", "out2", "--no-json")
    assert proc.stdout.split() == [f"out2/mix/refusal/{ALL_LAYERS}/prompt_2.pt"]
    bad = subprocess.run([sys.executable, SCRIPT, "--experiment", "mix", "--out", "o", "--trait", "nope"],
                         cwd=tmp_path, text=True, capture_output=True)
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "traitflow export: experiments/mix: no captured files for traits ['nope']; fix: run the workflow first "
        "(snakemake), or check the names chosen")

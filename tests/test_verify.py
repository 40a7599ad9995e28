"""The format verifiers accept what the workflow writes and name each problem of a broken file in one line."""

import glob
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from traitflow.core.errors import TraitflowError
from traitflow.core.formats import load_json, load_pt, save_json, save_pt
from traitflow.outputs.verify import check, cli


def demo_files(demo_run, pattern):
    files = sorted(glob.glob(os.path.join(demo_run["dir"], "experiments", "demo", pattern)))
    assert files, pattern
    return files


ALL_LAYERS = "*/inference/residual_stream_activations/prompt_*"
SHARED = "inference/shared/prompt_*.safetensors"
INTERNALS = "inference/layer_internal_states/prompt_*_layer*.pt"
TRAIT_SINGLE = "*/inference/layer_internal_states/prompt_*_layer*"


def run_cli(script, files):
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", script), *files],
                          text=True, capture_output=True)


def test_cli_accepts_every_file_the_demo_wrote(demo_run):
    for script, patterns in (("verify_all_layers_format.py", [ALL_LAYERS, SHARED]),
                             ("verify_single_layer_format.py", [INTERNALS, TRAIT_SINGLE])):
        files = [f for p in patterns for f in demo_files(demo_run, p)]
        proc = run_cli(script, files)
        assert proc.returncode == 0, proc.stdout
        assert proc.stdout == ""


def test_cli_fails_with_one_line_per_problem(demo_run, tmp_path):
    good = demo_files(demo_run, "refusal/inference/residual_stream_activations/prompt_0.pt")[0]
    rec = load_pt(good)
    del rec["projections"]
    bad = str(tmp_path / "bad.pt")
    save_pt(rec, bad)
    proc = run_cli("verify_all_layers_format.py", [good, bad])
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [f"{bad}: missing key 'projections'"]


def broken_lines(kind, record, tmp_path, capsys, ext="pt"):
    """What the CLI prints for one record saved as a file (in-process: no torch import per case)."""
    path = str(tmp_path / f"broken.{ext}")
    (save_pt if ext == "pt" else save_json)(record, path)
    assert cli([path], kind) == 1
    lines = capsys.readouterr().out.splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines)
    return [line[len(path) + 2:] for line in lines]


@pytest.fixture
def all_layers(demo_run):
    path = demo_files(demo_run, "refusal/inference/residual_stream_activations/prompt_1.pt")[0]
    rec = load_pt(path)
    return rec, rec["prompt"]["n_tokens"], rec["response"]["n_tokens"], rec["metadata"]["n_layers"]


def test_all_layers_wrong_shape(all_layers, tmp_path, capsys):
    rec, n_prompt, _, n_layers = all_layers
    rec["projections"]["prompt"] = rec["projections"]["prompt"][1:]
    assert broken_lines("all_layers", rec, tmp_path, capsys) == [
        f"projections.prompt: shape [{n_prompt - 1}, {n_layers}, 3], expected [{n_prompt}, {n_layers}, 3]"]


def test_all_layers_nan(all_layers, tmp_path, capsys):
    rec = all_layers[0]
    rec["projections"]["response"][0, 0, 0] = float("nan")
    assert broken_lines("all_layers", rec, tmp_path, capsys) == ["projections.response: contains NaN or infinite values"]


def test_all_layers_wrong_dtype(all_layers, tmp_path, capsys):
    rec = all_layers[0]
    rec["projections"]["prompt"] = rec["projections"]["prompt"].double()
    assert broken_lines("all_layers", rec, tmp_path, capsys) == ["projections.prompt: dtype float64, expected float32"]


@pytest.fixture
def seed(demo_run):
    """The seed's full dict (attention included), as traitflow.load_seed_format rebuilds it."""
    from traitflow import load_seed_format

    rec = load_seed_format(demo_files(demo_run, "refusal/inference/residual_stream_activations/prompt_1.pt")[0])
    return rec, rec["prompt"]["n_tokens"], rec["response"]["n_tokens"], rec["metadata"]["n_layers"]


def test_all_layers_wrong_layer_count(seed, tmp_path, capsys):
    rec, n_prompt, n_response, n_layers = seed
    rec["metadata"]["n_layers"] = n_layers + 1
    lines = broken_lines("all_layers", rec, tmp_path, capsys)
    assert f"projections.prompt: shape [{n_prompt}, {n_layers}, 3], expected [{n_prompt}, {n_layers + 1}, 3]" in lines
    assert f"attention_weights.prompt: {n_layers} layers, expected {n_layers + 1} (metadata.n_layers)" in lines
    assert f"attention_weights.response[{n_response - 1}]: {n_layers} layers, expected {n_layers + 1} (metadata.n_layers)" in lines


def test_all_layers_short_attention_row(seed, tmp_path, capsys):
    rec, n_prompt, _, _ = seed
    rec["attention_weights"]["response"][2]["layer_1"] = rec["attention_weights"]["response"][2]["layer_1"][:-1]
    assert broken_lines("all_layers", rec, tmp_path, capsys) == [
        f"attention_weights.response[2].layer_1: shape [{n_prompt + 2}], expected [{n_prompt + 3}]"]


def test_all_layers_token_count_and_missing_rows(seed, tmp_path, capsys):
    rec, _, n_response, _ = seed
    rec["response"]["tokens"] = rec["response"]["tokens"][:-1]
    rec["attention_weights"]["response"] = rec["attention_weights"]["response"][:-1]
    assert broken_lines("all_layers", rec, tmp_path, capsys) == [
        f"response.tokens: {n_response - 1} entries, expected {n_response} (response.n_tokens)",
        f"attention_weights.response: {n_response - 1} rows, expected {n_response} (response.n_tokens)"]


def test_all_layers_seed_attention_not_a_distribution(seed, tmp_path, capsys):
    rec = seed[0]
    rec["attention_weights"]["prompt"]["layer_0"][0][0] += 0.5
    lines = broken_lines("all_layers", rec, tmp_path, capsys)
    assert lines == ["attention_weights.prompt.layer_0: attention rows do not sum to 1 (off by up to 0.5)"]


def test_all_layers_json_short_projections(demo_run, tmp_path, capsys):
    rec = load_json(demo_files(demo_run, "refusal/inference/residual_stream_activations/prompt_1.json")[0])
    n_response, n_layers = rec["metadata"]["n_response"], rec["metadata"]["n_layers"]
    rec["projections"]["response"].pop()
    assert broken_lines("all_layers", rec, tmp_path, capsys, ext="json") == [
        f"projections.response: shape [{n_response - 1}, {n_layers}, 3], expected [{n_response}, {n_layers}, 3]"]


def copy_with_shared(demo_run, tmp_path, prompt=1):
    """A per-trait .pt and its shared file copied side by side, the .pt naming the copy."""
    import shutil

    rec = load_pt(demo_files(demo_run, f"refusal/inference/residual_stream_activations/prompt_{prompt}.pt")[0])
    shared = str(tmp_path / "shared.safetensors")
    shutil.copy(demo_files(demo_run, f"inference/shared/prompt_{prompt}.safetensors")[0], shared)
    rec["metadata"]["shared_file"] = "shared.safetensors"
    return rec, shared


def test_per_trait_file_whose_shared_file_is_missing_or_holds_other_tokens(demo_run, tmp_path, capsys):
    rec, shared = copy_with_shared(demo_run, tmp_path)
    rec["response"]["token_ids"] = [t + 1 for t in rec["response"]["token_ids"]]
    assert broken_lines("all_layers", rec, tmp_path, capsys) == [
        "metadata.shared_file: " + shared + " holds other tokens than this file"]
    os.unlink(shared)
    assert broken_lines("all_layers", rec, tmp_path, capsys) == [f"metadata.shared_file: {shared} does not exist"]


def test_shared_file_whose_attention_is_not_a_distribution(demo_run, tmp_path, capsys):
    from safetensors.numpy import load_file, save_file
    from safetensors import safe_open

    _, shared = copy_with_shared(demo_run, tmp_path)
    with safe_open(shared, framework="numpy") as fh:
        meta = fh.metadata()
    tensors = load_file(shared)
    tensors["attention"][:] = 0  # every row sums to 0
    save_file(tensors, shared, metadata=meta)
    assert cli([shared], "all_layers") == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{shared}: attention: token 0's rows do not sum to 1 (off by up to 1)"]


@pytest.fixture
def internals(demo_run):
    rec = load_pt(demo_files(demo_run, "inference/layer_internal_states/prompt_2_layer1.pt")[0])
    return rec, rec["prompt"]["n_tokens"], rec["response"]["n_tokens"], rec["metadata"]


def test_internals_wrong_shape_nan_and_short_row(internals, tmp_path, capsys):
    rec, n_prompt, n_response, meta = internals
    kv_width = meta["n_kv_heads"] * meta["head_dim"]
    rec["internals"]["prompt"]["attention"]["k_rotary"] = rec["internals"]["prompt"]["attention"]["k_rotary"][:, :-1]
    rec["internals"]["response"]["residual"]["after_attn"][1, 3] = float("inf")
    rows = rec["internals"]["response"]["attention"]["attn_weights"]
    rows[0] = rows[0][:, :-1]
    assert broken_lines("single_layer", rec, tmp_path, capsys) == [
        f"internals.prompt.attention.k_rotary: shape [{n_prompt}, {kv_width - 1}], expected [{n_prompt}, {kv_width}]",
        "internals.response.residual.after_attn: contains NaN or infinite values",
        f"internals.response.attention.attn_weights[0]: shape [{meta['n_heads']}, {n_prompt}], "
        f"expected [{meta['n_heads']}, {n_prompt + 1}]"]


def test_internals_missing_key_and_layer_out_of_range(internals, tmp_path, capsys):
    rec, _, _, meta = internals
    del rec["internals"]["response"]["mlp"]["gate_act"]
    rec["layer"] = rec["metadata"]["layer"] = meta["n_layers"]
    assert broken_lines("single_layer", rec, tmp_path, capsys) == [
        f"layer: {meta['n_layers']} is not one of the model's layers 0..{meta['n_layers'] - 1} (metadata.n_layers)",
        "internals.response.mlp: missing key 'gate_act'"]


@pytest.fixture
def trait_json(demo_run):
    return load_json(demo_files(demo_run, "sycophancy/inference/layer_internal_states/prompt_3_layer2.json")[0])


def test_trait_file_heads_that_do_not_add_up(trait_json, tmp_path, capsys):
    trait_json["decomposition"]["head_contributions"][0] = [x + 1 for x in trait_json["decomposition"]["head_contributions"][0]]
    lines = broken_lines("single_layer", trait_json, tmp_path, capsys, ext="json")
    assert len(lines) == 1 and lines[0].startswith("decomposition.head_contributions: heads sum to attn_contribution only within 1")


def test_trait_file_missing_key_short_list_and_bad_neuron(trait_json, tmp_path, capsys):
    n_tokens = trait_json["prompt"]["n_tokens"] + trait_json["response"]["n_tokens"]
    d_mlp = trait_json["metadata"]["d_mlp"]
    del trait_json["decomposition"]["mlp_contribution"]
    trait_json["decomposition"]["residual_in"].pop()
    trait_json["top_neurons"]["indices"][0] = d_mlp
    assert broken_lines("single_layer", trait_json, tmp_path, capsys, ext="json") == [
        f"decomposition.residual_in: shape [{n_tokens - 1}], expected [{n_tokens}]",
        "decomposition: missing key 'mlp_contribution'",
        f"top_neurons.indices: expected a list of neuron ids in 0..{d_mlp - 1} (metadata.d_mlp)"]


def test_unreadable_files(tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text('{"prompt": ')
    missing = str(tmp_path / "missing.pt")
    assert cli([str(broken), missing], "single_layer") == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{broken}: not a readable JSON file (JSONDecodeError: ")
    assert lines[1] == f"{missing}: file not found"


def test_check_refuses_a_bad_record_before_it_is_written(all_layers):
    rec = all_layers[0]
    del rec["metadata"]["n_layers"]
    with pytest.raises(TraitflowError) as err:
        check(rec, "all_layers", "out/prompt_0.pt")
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("out/prompt_0.pt: 1 format problem(s): metadata: missing key 'n_layers'")


def test_json_mirror_of_a_zero_token_response_is_valid(trait_json):
    """A response that stopped at once: empty lists must not read as wrong shapes."""
    from traitflow.outputs.verify import verify_single_layer

    n_response = trait_json["response"]["n_tokens"]
    trait_json["response"] = {"text": "", "tokens": [], "token_ids": [], "n_tokens": 0}
    dec = trait_json["decomposition"]
    for name, values in dec.items():
        dec[name] = [row[:-n_response] for row in values] if name == "head_contributions" else values[:-n_response]
    trait_json["top_neurons"]["contributions"] = [row[:-n_response] for row in trait_json["top_neurons"]["contributions"]]
    assert verify_single_layer(json.loads(json.dumps(trait_json))) == []


def test_export_seed_format_writes_files_the_seed_verifier_accepts(demo_run, tmp_path):
    from traitflow import load_seed_format

    source = demo_files(demo_run, "sycophancy/inference/residual_stream_activations/prompt_2.pt")[0]
    proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "export_seed_format.py"), source,
                           "--out", str(tmp_path), "--json"], text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    written = proc.stdout.split()  # the .pt, then its .json mirror
    assert len(written) == 2 and os.path.exists(written[0]) and written[1] == written[0][:-3] + ".json"
    exported = load_pt(written[0])
    assert set(exported) == {"prompt", "response", "projections", "attention_weights", "metadata"}
    assert len(exported["attention_weights"]["response"]) == exported["response"]["n_tokens"]
    assert run_cli("verify_all_layers_format.py", [written[0], written[0][:-3] + ".json"]).returncode == 0
    again = load_seed_format(source)
    assert all((exported["attention_weights"]["prompt"][k] == v).all()
               for k, v in again["attention_weights"]["prompt"].items())

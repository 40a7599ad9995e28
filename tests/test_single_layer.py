"""Single-layer deep dive against independent oracles, for every supported architecture, and in the workflow."""

import glob
import json
import os
import re
import shutil
import sys

import numpy as np
import pytest
import torch

from conftest import TEST_CONFIG, date_back, deep_update, job_counts, make_workdir, snakemake
from traitflow.core.errors import TraitflowError
from traitflow.core.formats import load_json, load_pt
from traitflow.model.generate import encode_prompt
from traitflow.model.decomposition import decompose
from traitflow.model.layer_weights import load_layer, load_layers
from traitflow.model.single_layer import capture_internals, internals_record, layer_block, load_seed_format, model_dims
from traitflow.outputs.verify import verify_single_layer

PROMPTS = ["What is the capital of France?", "Hi", "Tell me a short story about a dragon who learns to read."]
LAYERS = [0, 1]  # layer 1 is below the last layer, so hidden_states[2] is a raw residual
RESPONSE_TOKENS = 5


def sequences(tokenizer):
    # Different lengths, so the capture batch really is padded.
    return [encode_prompt(tokenizer, p, chat_template=False) + list(range(40, 45 + 2 * k)) for k, p in enumerate(PROMPTS)]


def oracle_forward(model, seq, monkeypatch):
    """A plain unpadded forward pass, with hooks written here, independent of traitflow's.

    Post-rotary Q/K and the per-head outputs are what the eager attention kernel
    itself receives and returns.
    """
    got = {l: {} for l in LAYERS}
    handles = []
    for l in LAYERS:
        block = model.model.layers[l]
        for name in ("q_proj", "k_proj", "v_proj"):
            handles.append(getattr(block.self_attn, name).register_forward_hook(
                lambda m, a, out, l=l, name=name: got[l].__setitem__(name, out[0])))
        handles.append(block.mlp.register_forward_pre_hook(lambda m, a, l=l: got[l].__setitem__("mlp_in", a[0][0])))
    module = sys.modules[type(model.model.layers[0].self_attn).__module__]
    eager = module.eager_attention_forward

    def recording_attention(attn, query, key, value, mask, **kw):
        out, weights = eager(attn, query, key, value, mask, **kw)
        if attn.layer_idx in got:
            T = query.shape[2]
            got[attn.layer_idx].update(q_rotary=query[0].transpose(0, 1).reshape(T, -1),
                                       k_rotary=key[0].transpose(0, 1).reshape(T, -1), z=out[0].reshape(T, -1))
        return out, weights

    monkeypatch.setattr(module, "eager_attention_forward", recording_attention)
    try:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([seq]), output_hidden_states=True, output_attentions=True)
    finally:
        for h in handles:
            h.remove()
    return got, out


@pytest.fixture(scope="module")
def captured(tiny_model):
    model, tokenizer, model_type = tiny_model
    seqs = sequences(tokenizer)
    return model, model_type, seqs, capture_internals(model, seqs, LAYERS, batch_size=8)


def test_qkv_pre_and_post_rotary_equal_a_plain_forward_pass(captured, monkeypatch):
    model, _, seqs, caps = captured
    for seq, cap in zip(seqs, caps):
        oracle, _ = oracle_forward(model, seq, monkeypatch)
        for l in LAYERS:
            for name in ("q_proj", "k_proj", "v_proj", "q_rotary", "k_rotary", "z"):
                torch.testing.assert_close(cap[l]["attention"][name], oracle[l][name], atol=1e-5, rtol=1e-5)
            # Rotary really happened: positions > 0 differ from the raw projection.
            assert not torch.allclose(cap[l]["attention"]["q_rotary"][1:], cap[l]["attention"]["q_proj"][1:])


def test_mlp_tensors_equal_a_plain_forward_pass(captured, monkeypatch):
    model, _, seqs, caps = captured
    for seq, cap in zip(seqs, caps):
        oracle, _ = oracle_forward(model, seq, monkeypatch)
        for l in LAYERS:
            mlp, x = model.model.layers[l].mlp, oracle[l]["mlp_in"]
            with torch.no_grad():
                gate_act = mlp.act_fn(x @ mlp.gate_proj.weight.T)
                up = x @ mlp.up_proj.weight.T
                neurons = gate_act * up
                expected = {"up_proj": up, "gate_act": gate_act, "neurons": neurons,
                            "down_proj": neurons @ mlp.down_proj.weight.T}
            for name, value in expected.items():
                torch.testing.assert_close(cap[l]["mlp"][name], value, atol=1e-5, rtol=1e-5)


def test_per_head_attention_and_residuals_equal_output_attentions_and_hidden_states(captured, monkeypatch):
    model, _, seqs, caps = captured
    for seq, cap in zip(seqs, caps):
        _, out = oracle_forward(model, seq, monkeypatch)
        for l in LAYERS:
            assert cap[l]["attention"]["attn_weights"].shape == out.attentions[l][0].shape  # [heads, n, n]
            torch.testing.assert_close(cap[l]["attention"]["attn_weights"], out.attentions[l][0], atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(cap[l]["residual"]["input"], out.hidden_states[l][0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(cap[l]["residual"]["output"], out.hidden_states[l + 1][0], atol=1e-5, rtol=1e-5)


def fake_response(seq, n_response):
    n_prompt = len(seq) - n_response
    side = lambda ids: {"text": "", "tokens": [str(i) for i in ids], "token_ids": ids, "n_tokens": len(ids)}
    return {"prompt": side(seq[:n_prompt]), "response": side(seq[n_prompt:])}


def rms_factor(norm, y):
    """[T, d] factor of a Gemma-2 RMSNorm written out by hand: y * rsqrt(mean(y^2) + eps) * (1 + w)."""
    return (1 / np.sqrt((y ** 2).mean(-1, keepdims=True) + norm.eps)) * (1 + norm.weight.detach().double().numpy())


def test_decomposition_adds_up_to_residual_deltas(captured, monkeypatch):
    model, model_type, seqs, caps = captured
    d_mlp = model.config.intermediate_size
    vector = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(7))
    unit = vector.double().numpy() / np.linalg.norm(vector.double().numpy())
    layer = 1
    block = model.model.layers[layer]
    for seq, cap in zip(seqs, caps):
        rec = internals_record(fake_response(seq, RESPONSE_TOKENS), cap[layer], layer, model_dims(model), {})
        dec, top = decompose(block, model.config, rec, vector, top_k=d_mlp)
        oracle, out = oracle_forward(model, seq, monkeypatch)
        resid_in, resid_out = (out.hidden_states[i][0].double().numpy() @ unit for i in (layer, layer + 1))

        np.testing.assert_allclose(dec["residual_in"].numpy(), resid_in, atol=1e-4)
        np.testing.assert_allclose(dec["residual_out"].numpy(), resid_out, atol=1e-4)
        np.testing.assert_allclose((dec["attn_contribution"] + dec["mlp_contribution"]).numpy(),
                                   resid_out - resid_in, atol=1e-4)
        np.testing.assert_allclose(dec["attn_contribution"].numpy(), (dec["after_attn"] - dec["residual_in"]).numpy(),
                                   atol=1e-4)
        np.testing.assert_allclose(dec["head_contributions"].sum(0).numpy(), dec["attn_contribution"].numpy(), atol=1e-5)

        # Each head through o_proj (and Gemma-2's post-attention norm, with the whole output's scale).
        z, W_o = oracle[layer]["z"].double().numpy(), block.self_attn.o_proj.weight.detach().double().numpy()
        hd, H = block.self_attn.head_dim, model.config.num_attention_heads
        per_head = [z[:, h * hd:(h + 1) * hd] @ W_o[:, h * hd:(h + 1) * hd].T for h in range(H)]
        factor = rms_factor(block.post_attention_layernorm, sum(per_head)) if model_type == "gemma2" else 1.0
        np.testing.assert_allclose(dec["head_contributions"].numpy(),
                                   np.stack([(y * factor) @ unit for y in per_head]), atol=1e-5)

        # Each neuron through down_proj (and Gemma-2's post-feedforward norm).
        mlp = block.mlp
        x = oracle[layer]["mlp_in"]
        neurons = (mlp.act_fn(x @ mlp.gate_proj.weight.T) * (x @ mlp.up_proj.weight.T)).detach().double().numpy()
        W_d = mlp.down_proj.weight.detach().double().numpy()
        factor = rms_factor(block.post_feedforward_layernorm, neurons @ W_d.T) if model_type == "gemma2" else 1.0
        by_neuron = neurons * ((factor * unit) @ W_d)  # [T, d_mlp]
        order = np.argsort(-np.abs(by_neuron).mean(0), kind="stable")
        assert top["indices"][:5] == order[:5].tolist()
        np.testing.assert_allclose(top["contributions"].numpy(), by_neuron[:, top["indices"]].T, atol=1e-5)
        np.testing.assert_allclose(top["contributions"].sum(0).numpy(), dec["mlp_contribution"].numpy(), atol=1e-4)


def test_internals_record_splits_prompt_and_response_like_the_seed(captured):
    model, _, seqs, caps = captured
    seq, cap = seqs[2], caps[2]
    n_prompt = len(seq) - RESPONSE_TOKENS
    rec = internals_record(fake_response(seq, RESPONSE_TOKENS), cap[1], 1, model_dims(model), {})
    full = cap[1]["attention"]["attn_weights"]
    rows = rec["internals"]["response"]["attention"]["attn_weights"]
    assert len(rows) == RESPONSE_TOKENS
    for j, row in enumerate(rows):
        assert row.shape == (model.config.num_attention_heads, n_prompt + j + 1)
        torch.testing.assert_close(row, full[:, n_prompt + j, : n_prompt + j + 1])
    torch.testing.assert_close(rec["internals"]["prompt"]["attention"]["attn_weights"], full[:, :n_prompt, :n_prompt])
    torch.testing.assert_close(rec["internals"]["response"]["mlp"]["neurons"], cap[1]["mlp"]["neurons"][n_prompt:])
    assert verify_single_layer(rec) == []


# --- one layer's weights, read from the checkpoint without loading the model ------------------


@pytest.fixture(scope="module")
def checkpoints(tiny_model, tmp_path_factory):
    """The tiny model saved twice: one model.safetensors, and sharded (an index and ~17 files of 50 KB)."""
    model, _, model_type = tiny_model
    root = tmp_path_factory.mktemp(f"checkpoints_{model_type}")
    single, sharded = str(root / "single"), str(root / "sharded")
    model.save_pretrained(single)
    model.save_pretrained(sharded, max_shard_size="50KB")
    assert os.path.exists(os.path.join(single, "model.safetensors"))
    assert len(glob.glob(os.path.join(sharded, "model-*.safetensors"))) > 3
    return {"single": single, "sharded": sharded}


@pytest.mark.parametrize("layout", ["single", "sharded"])
def test_weights_only_layer_equals_the_loaded_models_layer(captured, checkpoints, layout, monkeypatch):
    """Same tensors, and the same decomposition bit for bit, with no from_pretrained of the model."""
    from transformers import AutoModelForCausalLM

    model, _, seqs, caps = captured

    def refuse(*args, **kwargs):
        raise AssertionError("the whole model was loaded")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", refuse)
    config, blocks = load_layers(checkpoints[layout], LAYERS, "float32")
    assert sorted(blocks) == LAYERS and config.model_type == model.config.model_type
    vector = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(3))
    for layer in LAYERS:
        full, alone = layer_block(model, layer).state_dict(), blocks[layer].state_dict()
        assert set(alone) == set(full)
        for name, value in full.items():
            assert alone[name].dtype == torch.float32 and torch.equal(alone[name], value), name
        assert not any(p.is_meta for p in blocks[layer].parameters())
        for seq, cap in zip(seqs, caps):
            rec = internals_record(fake_response(seq, RESPONSE_TOKENS), cap[layer], layer, model_dims(model), {})
            want = decompose(layer_block(model, layer), model.config, rec, vector, top_k=8)
            got = decompose(blocks[layer], config, rec, vector, top_k=8)
            for expected, actual in zip(want, got):
                assert expected.keys() == actual.keys()
                for key in expected:
                    if isinstance(expected[key], torch.Tensor):
                        assert torch.equal(actual[key], expected[key]), key  # same weights, same arithmetic
                    else:
                        assert actual[key] == expected[key], key


def test_sharded_checkpoint_opens_only_the_files_holding_the_layer(checkpoints, monkeypatch):
    import safetensors

    folder = checkpoints["sharded"]
    with open(os.path.join(folder, "model.safetensors.index.json")) as fh:
        weight_map = json.load(fh)["weight_map"]
    holding = {os.path.join(folder, f) for k, f in weight_map.items() if k.startswith("model.layers.1.")}
    opened, real = [], safetensors.safe_open
    monkeypatch.setattr(safetensors, "safe_open", lambda path, *a, **kw: opened.append(path) or real(path, *a, **kw))
    load_layer(folder, 1, "float32")
    assert set(opened) == holding and len(holding) < len(set(weight_map.values()))


def test_weights_only_layer_in_bfloat16_equals_a_bfloat16_load(demo_model_dir):
    from traitflow.model.modeling import load_model

    model = load_model(demo_model_dir, "cpu", "bfloat16", eager=False)
    _, block = load_layer(demo_model_dir, 2, "bfloat16")
    for name, value in layer_block(model, 2).state_dict().items():
        assert block.state_dict()[name].dtype == torch.bfloat16
        assert torch.equal(block.state_dict()[name], value), name


def test_a_hub_name_resolves_to_its_snapshot_in_the_local_cache(demo_model_dir, tmp_path, monkeypatch):
    snapshot = tmp_path / "hub" / "models--someone--tiny-gemma" / "snapshots" / "0123abcd"
    shutil.copytree(demo_model_dir, snapshot)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    _, block = load_layer("someone/tiny-gemma", 1)
    _, local = load_layer(demo_model_dir, 1)
    for name, value in local.state_dict().items():
        assert torch.equal(block.state_dict()[name], value)
    with pytest.raises(TraitflowError, match="not in the local Hugging Face cache"):
        load_layer("someone/absent", 1)


def test_unusable_checkpoints_are_one_line_errors(demo_model_dir, tmp_path):
    with pytest.raises(TraitflowError, match="layers \\[7\\] do not exist"):
        load_layers(demo_model_dir, [1, 7])
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(os.path.join(demo_model_dir, "config.json"), no_weights)
    with pytest.raises(TraitflowError, match="no model.safetensors"):
        load_layer(str(no_weights), 1)
    from safetensors.torch import load_file, save_file
    partial = tmp_path / "partial"
    shutil.copytree(demo_model_dir, partial)
    tensors = load_file(os.path.join(demo_model_dir, "model.safetensors"))
    save_file({k: v for k, v in tensors.items() if "layers.1.mlp.down_proj" not in k}, str(partial / "model.safetensors"),
              metadata={"format": "pt"})
    with pytest.raises(TraitflowError, match="lacks 1 tensor.*layer 1.*mlp.down_proj.weight"):
        load_layer(str(partial), 1)


# --- the workflow -----------------------------------------------------------------------------

DEMO_LAYERS = [1, 2]
SINGLE_LAYER_CONFIG = deep_update(json.loads(json.dumps(TEST_CONFIG)), {"single_layer": {"layers": DEMO_LAYERS}})


def n_shards(workdir):
    from traitflow.experiment.prompts import read_prompts
    per_job = SINGLE_LAYER_CONFIG["capture"]["prompts_per_job"]
    return -(-len(read_prompts(os.path.join(workdir, "experiments/demo/inference_prompts.json"))) // per_job)


def stage_targets(workdir):
    """The single-layer and all-layers capture manifests: what these tests read (no dynamics, report, viewer)."""
    return [f"manifests/demo/_shared/{stage}_shard{k}.json"
            for stage in ("capture", "capture_single_layer") for k in range(n_shards(workdir))]


@pytest.fixture(scope="module")
def sl_run(demo_run):
    """The session's demo run: its test config sets single_layer.layers to DEMO_LAYERS (read-only)."""
    assert SINGLE_LAYER_CONFIG == TEST_CONFIG
    return demo_run


def demo_files(run, pattern):
    return sorted(glob.glob(os.path.join(run["dir"], "experiments", "demo", pattern)))


def run_traits(run):
    return sorted(os.path.basename(os.path.dirname(p)) for p in demo_files(run, "*/extraction"))


def test_workflow_writes_single_layer_files_for_two_layers(sl_run):
    n_prompts = len(demo_files(sl_run, "inference/responses/prompt_*.json"))
    shared = demo_files(sl_run, "inference/layer_internal_states/prompt_*_layer*.pt")
    assert len(shared) == n_prompts * len(DEMO_LAYERS)
    for trait in run_traits(sl_run):
        for ext in ("pt", "json"):
            files = demo_files(sl_run, f"{trait}/inference/layer_internal_states/prompt_*_layer*.{ext}")
            assert sorted(os.path.basename(f) for f in files) == sorted(
                f"prompt_{i}_layer{l}.{ext}" for i in range(n_prompts) for l in DEMO_LAYERS)
    # One job per shard wrote every trait's files: one manifest and one log per shard, none per trait.
    shards = n_shards(sl_run["dir"])
    listed = []
    for k in range(shards):
        manifest = load_json(os.path.join(sl_run["dir"], f"manifests/demo/_shared/capture_single_layer_shard{k}.json"))
        listed += [f["path"] for f in manifest["files"]]  # each with its size and sha256 (traitflow/core/manifests.py)
    assert len(listed) == len(set(listed)) == n_prompts * len(DEMO_LAYERS) * 2 * len(run_traits(sl_run))
    assert not glob.glob(os.path.join(sl_run["dir"], "manifests/demo/[!_]*/capture_single_layer_*"))
    assert sorted(os.listdir(os.path.join(sl_run["dir"], "logs/demo/capture_single_layer"))) == sorted(
        f"shard{k}.log" for k in range(shards))


def test_job_decomposition_equals_the_loaded_models(sl_run):
    """The job read two layers' weights from model.safetensors; the loaded model's layer gives the same numbers."""
    from traitflow.model.modeling import load_model
    from traitflow.experiment.vectors import load_vector

    model = load_model(os.path.join(sl_run["dir"], "models/traitflow-demo-chat"), "cpu", "float32", eager=False)
    for path in demo_files(sl_run, "*/inference/layer_internal_states/prompt_[01]_layer*.pt"):
        rec = load_pt(path)
        internals = load_pt(os.path.normpath(os.path.join(os.path.dirname(path), rec["metadata"]["internals_file"])))
        vector = load_vector(os.path.join(sl_run["dir"], rec["metadata"]["vector_path"]))
        dec, top = decompose(layer_block(model, rec["layer"]), model.config, internals, vector,
                             len(rec["top_neurons"]["indices"]))
        assert top["indices"] == rec["top_neurons"]["indices"]
        for key, value in dec.items():
            assert torch.equal(rec["decomposition"][key], value), (path, key)


def test_trait_file_agrees_with_the_all_layers_capture(sl_run):
    """Same trait, prompt and vector: the residual projections and the head-mean attention match."""
    import traitflow

    for path in demo_files(sl_run, "*/inference/layer_internal_states/prompt_*_layer*.pt"):
        trait_dir = os.path.dirname(os.path.dirname(os.path.dirname(path)))
        prompt, layer = os.path.basename(path)[:-3].rsplit("_layer", 1)
        layer = int(layer)
        seed = load_seed_format(path)
        whole = traitflow.load_seed_format(os.path.join(trait_dir, "inference", "residual_stream_activations",
                                                        f"{prompt}.pt"))
        proj = torch.cat([whole["projections"]["prompt"], whole["projections"]["response"]])[:, layer]
        for point, name in enumerate(("residual_in", "after_attn", "residual_out")):
            torch.testing.assert_close(seed["decomposition"][name], proj[:, point], atol=1e-4, rtol=1e-4)
        # the shared file stores attention as 16-bit fixed point: error up to 1 / 131070 (docs/formats.md)
        torch.testing.assert_close(seed["internals"]["prompt"]["attention"]["attn_weights"].mean(0),
                                   whole["attention_weights"]["prompt"][f"layer_{layer}"], atol=8e-6, rtol=0)
        assert seed["response"]["token_ids"] == whole["response"]["token_ids"]
        mirror = load_json(path[:-3] + ".json")  # numbers rounded to 4 significant digits
        np.testing.assert_allclose(mirror["decomposition"]["head_contributions"],
                                   seed["decomposition"]["head_contributions"].numpy(), rtol=6e-4, atol=1e-7)
        assert mirror["top_neurons"]["indices"] == seed["top_neurons"]["indices"]


def test_load_seed_format_returns_the_seed_dict(sl_run):
    import traitflow

    path = demo_files(sl_run, "refusal/inference/layer_internal_states/prompt_0_layer1.pt")[0]
    seed = load_seed_format(path)
    n_prompt, n_response = seed["prompt"]["n_tokens"], seed["response"]["n_tokens"]
    meta = seed["metadata"]
    assert seed["layer"] == meta["layer"] == 1
    assert {"trait", "trait_display_name", "layer", "vector_path", "model", "capture_date", "temperature"} <= set(meta)
    for side, n in (("prompt", n_prompt), ("response", n_response)):
        internals = seed["internals"][side]
        assert {"q_proj", "k_proj", "v_proj", "attn_weights"} <= set(internals["attention"])
        assert {"up_proj", "gelu", "down_proj"} <= set(internals["mlp"])
        assert set(internals["residual"]) == {"input", "after_attn", "output"}
        assert internals["mlp"]["gelu"].shape == (n, meta["d_mlp"])
        assert internals["residual"]["output"].shape == (n, meta["d_model"])
    assert seed["internals"]["prompt"]["attention"]["attn_weights"].shape == (meta["n_heads"], n_prompt, n_prompt)
    rows = seed["internals"]["response"]["attention"]["attn_weights"]
    assert [r.shape for r in rows] == [(meta["n_heads"], n_prompt + j + 1) for j in range(n_response)]
    assert verify_single_layer(seed) == []
    via_package = traitflow.load_seed_format(path)  # the top-level dispatcher gives the same dict
    assert via_package["decomposition"].keys() == seed["decomposition"].keys()
    assert torch.equal(via_package["decomposition"]["residual_out"], seed["decomposition"]["residual_out"])


def single_layer_jobs(jobs):
    return {r: n for r, n in jobs.items() if "single_layer" in r or "internals" in r}


def dry_run_stages(workdir):
    """{rule: jobs} a dry run towards stage_targets() schedules (targets first: --quiet takes a list)."""
    return job_counts(snakemake(workdir, *stage_targets(workdir), "-n", "--quiet", "rules").stdout)


def test_new_vector_reruns_the_single_layer_job_once_per_shard(sl_run, tmp_path):
    """Not the shared internals: the single-layer job needs no forward pass; one job per shard for every trait."""
    workdir = str(tmp_path / "demo")
    shutil.copytree(sl_run["dir"], workdir, symlinks=True)
    assert single_layer_jobs(dry_run_stages(workdir)) == {}
    date_back(workdir)
    for path in glob.glob(os.path.join(workdir, "experiments/demo/refusal/extraction/vectors/probe_layer*.pt")):
        torch.save(-torch.load(path, weights_only=True), path)
    assert single_layer_jobs(dry_run_stages(workdir)) == {
        f"capture_single_layer_shard{s}": 1 for s in range(n_shards(workdir))}


def test_single_layer_jobs_do_not_depend_on_the_number_of_traits_and_take_no_gpu(tmp_path):
    counts, shards = {}, None
    for traits in ("all", ["refusal"]):
        name = "all" if traits == "all" else "one"
        workdir = make_workdir(str(tmp_path / name),
                               deep_update(json.loads(json.dumps(SINGLE_LAYER_CONFIG)),
                                           {"traits": traits, "resources": {"gpu": 1}}))
        shards = n_shards(workdir)
        out = snakemake(workdir, "-n", "--quiet", "host").stdout
        counts[name] = single_layer_jobs(job_counts(out))
        blocks = re.split(r"\n(?=(?:local)?rule )", out)
        for k in range(shards):
            internals = next(b for b in blocks if re.match(rf"(local)?rule capture_layer_internals_shard{k}:", b))
            single = next(b for b in blocks if re.match(rf"(local)?rule capture_single_layer_shard{k}:", b))
            assert re.search(r"resources:.*\bgpu=1\b", internals)  # the forward pass is a model job
            assert "gpu=" not in re.search(r"resources:.*", single)[0]  # the decomposition runs on the CPU
    assert counts["all"] == counts["one"] == {
        **{f"capture_layer_internals_shard{k}": 1 for k in range(shards)},
        **{f"capture_single_layer_shard{k}": 1 for k in range(shards)}}

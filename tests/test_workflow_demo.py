"""The demo experiment run by Snakemake: every (trait, prompt) file exists and matches the oracles."""

import glob
import json
import os
import re

import numpy as np
import pytest
import torch

from traitflow import SUBLAYERS
from traitflow.experiment.prompts import read_prompts

TRAITS = ["refusal", "sycophancy", "uncertainty"]


def files(demo_run, trait, ext):
    pattern = os.path.join(demo_run["dir"], "experiments/demo", trait,
                           "inference/residual_stream_activations", f"prompt_*.{ext}")
    return sorted(glob.glob(pattern), key=lambda p: int(p.rsplit("_", 1)[1].split(".")[0]))


def response(demo_run, i):
    with open(os.path.join(demo_run["dir"], f"experiments/demo/inference/responses/prompt_{i}.json")) as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def model(demo_run):
    from traitflow.model.modeling import load_model
    return load_model(os.path.join(demo_run["dir"], "models/traitflow-demo-chat"), "cpu", "float32")


@pytest.fixture(scope="module")
def prompts(demo_run):
    return read_prompts(os.path.join(demo_run["dir"], "experiments/demo/inference_prompts.json"))


def test_every_trait_and_prompt_has_pt_and_json(demo_run, prompts):
    for trait in TRAITS:
        assert len(files(demo_run, trait, "pt")) == len(prompts)
        assert len(files(demo_run, trait, "json")) == len(prompts)


def test_summary_printed_per_trait(demo_run, prompts):
    out = demo_run["output"]
    assert "traitflow summary" in out
    for trait in TRAITS:
        written = glob.glob(os.path.join(demo_run["dir"], "experiments/demo", trait, "inference/**/*.*"), recursive=True)
        line = next(l for l in out.splitlines() if l.startswith(trait + " "))
        assert line.split()[1:4] == [str(len(written)), "0", "0"]  # built, up to date, failed


def test_responses_are_shared_and_token_ids_are_the_processed_sequence(demo_run, prompts):
    for i, text in enumerate(prompts):
        resp = response(demo_run, i)
        assert resp["prompt"]["text"] == text
        for trait in TRAITS:
            rec = torch.load(files(demo_run, trait, "pt")[i], weights_only=True)
            assert rec["prompt"]["token_ids"] == resp["prompt"]["token_ids"]
            assert rec["response"]["token_ids"] == resp["response"]["token_ids"]
            assert rec["response"]["n_tokens"] == len(resp["response"]["token_ids"])


def test_file_layout_and_metadata(demo_run, model):
    n_layers = model.config.num_hidden_layers
    path = files(demo_run, "refusal", "pt")[0]
    rec = torch.load(path, weights_only=True)
    n_p, n_r = rec["prompt"]["n_tokens"], rec["response"]["n_tokens"]
    assert rec["projections"]["prompt"].shape == (n_p, n_layers, 3)
    assert rec["projections"]["response"].shape == (n_r, n_layers, 3)
    assert rec["projections"]["prompt"].dtype == torch.float32
    assert "attention_weights" not in rec  # trait-independent: once per prompt, in the shared file
    # Each tensor owns exactly its data: a saved slice would carry the whole batch's storage.
    tensors = [rec["projections"]["prompt"], rec["projections"]["response"]]
    assert all(t.untyped_storage().nbytes() == t.numel() * t.element_size() for t in tensors)
    meta = rec["metadata"]
    assert meta["n_layers"] == n_layers and meta["sublayers"] == list(SUBLAYERS)
    assert meta["method"] == "probe" and meta["vector_layer"] == n_layers // 2
    assert meta["vector_path"].endswith(f"refusal/extraction/vectors/probe_layer{n_layers // 2}.pt")
    assert meta["seed"] == 0 and meta["trait"] == "refusal" and "traitflow_version" in meta
    assert meta["dtype"] == "float32" and meta["prompt_index"] == 0
    shared = os.path.normpath(os.path.join(os.path.dirname(path), meta["shared_file"]))
    assert shared == os.path.join(demo_run["dir"], "experiments/demo/inference/shared/prompt_0.safetensors")


def test_every_trait_names_the_same_shared_file_per_prompt(demo_run, prompts):
    from traitflow.core.shared import read_shared

    for i in range(len(prompts)):
        named = {torch.load(files(demo_run, t, "pt")[i], weights_only=True)["metadata"]["shared_file"] for t in TRAITS}
        assert len(named) == 1
        shared = read_shared(os.path.join(demo_run["dir"], f"experiments/demo/inference/shared/prompt_{i}.safetensors"))
        resp = response(demo_run, i)
        assert shared.token_ids.tolist() == resp["prompt"]["token_ids"] + resp["response"]["token_ids"]
        assert shared.n_prompt == resp["prompt"]["n_tokens"]


def test_projections_norms_and_attention_match_an_independent_forward_pass(demo_run, model, prompts):
    """h . v/||v|| and ||h|| from output_hidden_states (numpy), attention (through the loader) from output_attentions."""
    from traitflow import load_capture, load_seed_format

    n_layers = model.config.num_hidden_layers
    worst = 0.0
    for trait in TRAITS:
        vec_path = os.path.join(demo_run["dir"], f"experiments/demo/{trait}/extraction/vectors/probe_layer{n_layers // 2}.pt")
        v = torch.load(vec_path, weights_only=True).double().numpy()
        unit = v / np.linalg.norm(v)
        for i in range(len(prompts)):
            rec = torch.load(files(demo_run, trait, "pt")[i], weights_only=True)
            ids = rec["prompt"]["token_ids"] + rec["response"]["token_ids"]
            with torch.no_grad():
                out = model(input_ids=torch.tensor([ids]), output_hidden_states=True, output_attentions=True)
            hs = [h[0].double().numpy() for h in out.hidden_states]
            got = torch.cat([rec["projections"]["prompt"], rec["projections"]["response"]]).double().numpy()
            loaded = load_capture(files(demo_run, trait, "pt")[i])
            for l in range(n_layers):
                np.testing.assert_allclose(got[:, l, 0], hs[l] @ unit, atol=1e-4, rtol=0)
                np.testing.assert_allclose(loaded["norms"][:, l, 0], np.linalg.norm(hs[l], axis=-1), rtol=1e-5)
                norm = np.linalg.norm(hs[l], axis=-1)
                cosine = np.divide(hs[l] @ unit, norm, out=np.zeros_like(norm), where=norm > 0)  # 0 for a zero residual
                np.testing.assert_allclose(loaded["cosine"][:, l, 0], cosine, atol=1e-5)
                if l < n_layers - 1:
                    np.testing.assert_allclose(got[:, l, 2], hs[l + 1] @ unit, atol=1e-4, rtol=0)
                worst = max(worst, np.abs(got[:, l, 0] - hs[l] @ unit).max())
            if trait != TRAITS[0]:
                continue  # attention is shared: once per prompt is enough
            seed = load_seed_format(files(demo_run, trait, "pt")[i])
            n_p = rec["prompt"]["n_tokens"]
            for l in range(n_layers):
                attn = out.attentions[l][0].mean(0).numpy()
                np.testing.assert_allclose(seed["attention_weights"]["prompt"][f"layer_{l}"].numpy(),
                                           attn[:n_p, :n_p], atol=1e-4, rtol=0)
                for j, rows in enumerate(seed["attention_weights"]["response"]):
                    np.testing.assert_allclose(rows[f"layer_{l}"].numpy(), attn[n_p + j, : n_p + j + 1], atol=1e-4, rtol=0)
    assert worst < 1e-4


def test_seed_format_passes_the_seed_verifier(demo_run, prompts):
    from traitflow import load_seed_format
    from traitflow.outputs.verify import verify_all_layers

    for trait in TRAITS:
        seed = load_seed_format(files(demo_run, trait, "pt")[-1])
        assert verify_all_layers(seed) == []
        n_p, n_r = seed["prompt"]["n_tokens"], seed["response"]["n_tokens"]
        assert seed["attention_weights"]["prompt"]["layer_0"].shape == (n_p, n_p)
        assert [rows["layer_0"].shape[0] for rows in seed["attention_weights"]["response"]] == \
            list(range(n_p + 1, n_p + n_r + 1))


def test_json_holds_projections_only_with_short_numbers(demo_run):
    pt = torch.load(files(demo_run, "uncertainty", "pt")[1], weights_only=True)
    with open(files(demo_run, "uncertainty", "json")[1]) as fh:
        text = fh.read()
    js = json.loads(text)
    assert set(js) == {"trait", "metadata", "projections"} and js["trait"] == "uncertainty"
    assert "attention" not in text and "tokens" not in js
    response_proj = pt["projections"]["response"].numpy()
    got = np.array(js["projections"]["response"])
    np.testing.assert_allclose(got, response_proj, rtol=5e-4, atol=1e-12)  # 4 significant digits
    # Every number is written with at most 4 significant digits (no float32 noise such as 0.03742999956011772).
    numbers = re.findall(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", text.split('"projections"', 1)[1])
    assert len(numbers) == pt["projections"]["prompt"].numel() + pt["projections"]["response"].numel()
    assert all(n == repr(float(format(float(n), ".4g"))) for n in numbers)
    assert js["metadata"]["n_prompt"] == pt["prompt"]["n_tokens"] and js["metadata"]["n_response"] == pt["response"]["n_tokens"]


def test_vectors_extracted_for_both_methods_at_every_layer(demo_run, model):
    vec_dir = os.path.join(demo_run["dir"], "experiments/demo/refusal/extraction/vectors")
    for method in ("mean_diff", "probe"):
        for layer in range(model.config.num_hidden_layers):
            vec = torch.load(os.path.join(vec_dir, f"{method}_layer{layer}.pt"), weights_only=True)
            assert vec.shape == (model.config.hidden_size,) and vec.dtype == torch.float32
            with open(os.path.join(vec_dir, f"{method}_layer{layer}_metadata.json")) as fh:
                meta = json.load(fh)
            assert meta["method"] == method and meta["layer"] == layer and meta["model"] == "models/traitflow-demo-chat"


def test_mean_diff_vector_matches_independent_recomputation(demo_run, model):
    """mean_diff = mean over positive examples of the token-mean residual_out (special tokens left out), minus negatives'."""
    from traitflow.model.modeling import load_tokenizer
    tok = load_tokenizer(os.path.join(demo_run["dir"], "models/traitflow-demo-chat"))
    ex_dir = os.path.join(demo_run["dir"], "experiments/demo/sycophancy/extraction")
    layer = 1

    def summary(path):
        rows = []
        for text in open(path).read().splitlines():
            enc = tok(text, return_special_tokens_mask=True)
            with torch.no_grad():
                hs = model(input_ids=torch.tensor([enc["input_ids"]]), output_hidden_states=True).hidden_states
            assert enc["special_tokens_mask"][0] == 1  # BOS: left out of the mean, like every special token
            rows.append(hs[layer + 1][0][torch.tensor(enc["special_tokens_mask"]) == 0].mean(0))
        return torch.stack(rows).mean(0)

    expected = summary(os.path.join(ex_dir, "positive.txt")) - summary(os.path.join(ex_dir, "negative.txt"))
    got = torch.load(os.path.join(ex_dir, f"vectors/mean_diff_layer{layer}.pt"), weights_only=True)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_rerun_with_same_config_reproduces_responses(demo_copy, demo_run):
    from conftest import snakemake
    before = [response(demo_run, i)["response"]["token_ids"] for i in range(4)]
    snakemake(demo_copy, "--cores", "2", "--forcerun", "generate_shard0", "--until", "generate_shard0")
    with open(os.path.join(demo_copy, "experiments/demo/inference/responses/prompt_0.json")) as fh:
        assert json.load(fh)["response"]["token_ids"] == before[0]
    after = [json.load(open(os.path.join(demo_copy, f"experiments/demo/inference/responses/prompt_{i}.json")))
             ["response"]["token_ids"] for i in range(4)]
    assert after == before

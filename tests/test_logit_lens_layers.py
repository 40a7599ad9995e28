"""capture.logit_lens_layers: which layers the lens reads, recorded in the shared file and honoured by its readers."""

import os

import numpy as np
import pytest
import torch
import yaml

from traitflow.model.capture import capture
from traitflow.core.errors import TraitflowError
from traitflow.model.lens import lens_layers, plan_lens, top_k
from traitflow.core.shared import read_metadata, read_shared, write_shared
from traitflow.outputs.verify import verify_shared
from traitflow.plan.workflow import check_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = os.path.join(REPO, "schemas", "config.schema.yaml")


def test_all_a_list_or_a_stride_counting_back_from_the_last_layer():
    assert lens_layers("all", 4) == [0, 1, 2, 3]
    assert lens_layers([3, 0, 3], 4) == [0, 3]
    assert lens_layers({"every": 4}, 26) == [1, 5, 9, 13, 17, 21, 25]  # the last layer is always in
    assert lens_layers({"every": 2}, 4) == [1, 3]
    assert lens_layers({"every": 40}, 26) == [25]
    assert plan_lens({"logit_lens": True, "logit_lens_top_k": 3, "logit_lens_layers": {"every": 2}}, 4) == (3, [1, 3])
    assert plan_lens({"logit_lens": False, "logit_lens_top_k": 3, "logit_lens_layers": [1]}, 4) == (0, [])


def test_a_layer_the_model_lacks_is_one_line_at_plan_time():
    with pytest.raises(TraitflowError) as info:
        plan_lens({"logit_lens": True, "logit_lens_top_k": 5, "logit_lens_layers": [2, 26, 30]}, 26)
    assert str(info.value) == ("config capture.logit_lens_layers: layers 26, 30 do not exist (the model has layers "
                               "0-25); fix: pick from those, or write `all` or {every: N}")


@pytest.mark.parametrize("value, message", [
    (4, "key capture.logit_lens_layers: 4 is not 'all', a non-empty list of layer indices, or {every: N}"),
    ("al", "key capture.logit_lens_layers: 'al' is not a string matching ^all$"),
    ([], "key capture.logit_lens_layers: [] is not 'all', a non-empty list of layer indices, or {every: N}"),
    ([1, -1], "key capture.logit_lens_layers.1: -1 is out of range for an integer (>= 0)"),
    ({"every": 0}, "key capture.logit_lens_layers.every: 0 is out of range for an integer (>= 1)"),
])
def test_a_bad_value_is_one_line_naming_the_key(value, message):
    with open(os.path.join(REPO, "config.yaml")) as fh:
        config = yaml.safe_load(fh)
    config["capture"]["logit_lens_layers"] = value
    with pytest.raises(TraitflowError) as info:
        check_config(config, SCHEMA)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_command_line_values_are_read_as_yaml():
    """`--config 'capture={logit_lens_layers: [1, 3]}'` reaches the config as strings; the schema reads them."""
    with open(os.path.join(REPO, "config.yaml")) as fh:
        config = yaml.safe_load(fh)
    for given, read in ((["1", "3"], [1, 3]), ({"every": "4"}, {"every": 4}), ("all", "all")):
        overrides = {"capture": {"logit_lens_layers": given}}
        config["capture"]["logit_lens_layers"] = given
        check_config(config, SCHEMA, [], overrides)
        assert config["capture"]["logit_lens_layers"] == read


def test_top_k_through_group_maxima_is_torch_topk():
    """The lens' top-k (a max per group of 256 entries, then a top-k over the best groups) is torch.topk's."""
    g = torch.Generator().manual_seed(0)
    for shape in ((3, 256 * 40), (5, 32003), (2, 700)):  # whole groups, a partial last group, too few groups
        x = torch.randn(*shape, generator=g)
        x[0, 7] = x[0, 9] = x.max() + 1  # the two largest share a group
        want, got = x.topk(5, dim=-1), top_k(x, 5)
        assert torch.equal(got[0], want.values) and torch.equal(got[1].sort().values, want.indices.sort().values)


@pytest.fixture(scope="module")
def gemma(demo_model_dir):
    """The demo model (a Gemma-2: final norm, tied unembedding and the final soft-cap) and two padded sequences."""
    from traitflow.model.modeling import load_model

    model = load_model(demo_model_dir, "cpu", "float32", eager=True)
    return model, [list(range(5, 25)), list(range(30, 41))]


def test_a_subset_lens_is_the_full_lens_at_those_layers(gemma):
    model, seqs = gemma
    every = capture(model, seqs, None, attention=False, keep_residuals=True, lens_top_k=4)
    subset = capture(model, seqs, None, attention=False, lens_top_k=4, lens_layers=[1, 3])
    norm, head, cap = model.model.norm, model.lm_head, model.config.final_logit_softcapping
    for full, part in zip(every, subset):
        assert full.lens_layers == [0, 1, 2, 3] and part.lens_layers == [1, 3]
        assert part.lens_ids.shape == (full.lens_ids.shape[0], 2, 4)
        assert torch.equal(part.lens_ids, full.lens_ids[:, [1, 3]])
        torch.testing.assert_close(part.lens_probs, full.lens_probs[:, [1, 3]])
        # Against the plain recipe: norm, unembedding, soft-cap, a full softmax, top-k, at a middle layer.
        with torch.no_grad():
            logits = head(norm(full.residuals[:, 1, 2]))
        want = (torch.tanh(logits / cap) * cap).softmax(-1).topk(4, dim=-1)
        assert torch.equal(part.lens_ids[:, 0], want.indices)
        torch.testing.assert_close(part.lens_probs[:, 0], want.values, atol=1e-6, rtol=1e-5)


def test_chunks_of_tokens_give_the_same_lens(gemma, monkeypatch):
    """The [tokens, vocab] logits are bounded by chunking the tokens (and on a CPU post-processed in blocks of
    rows); neither changes anything."""
    model, seqs = gemma
    whole = capture(model, seqs, None, attention=False, lens_top_k=3, lens_layers=[2])
    vocab = model.lm_head.weight.shape[0]
    monkeypatch.setattr("traitflow.model.lens.LENS_CHUNK_ELEMENTS", 7 * vocab)  # 7 tokens a chunk
    monkeypatch.setattr("traitflow.model.lens.CACHE_BYTES", 3 * vocab * 4)  # blocks of 3 rows (float32)
    chunked = capture(model, seqs, None, attention=False, lens_top_k=3, lens_layers=[2])
    for a, b in zip(whole, chunked):
        assert torch.equal(a.lens_ids, b.lens_ids)
        torch.testing.assert_close(a.lens_probs, b.lens_probs)


def test_the_shared_file_records_the_layers_and_readers_use_them(gemma, tmp_path):
    model, seqs = gemma
    cap = capture(model, seqs[:1], None, attention=False, lens_top_k=3, lens_layers=[0, 3])[0]
    T, L = len(seqs[0]), model.config.num_hidden_layers
    ids = sorted(set(cap.lens_ids.flatten().tolist()))
    strings = {i: f"tok{i}" for i in ids}
    path = str(tmp_path / "prompt_0.safetensors")
    write_shared(path, seqs[0], 5, cap.norms.numpy(), None,
                 (cap.lens_ids.numpy(), cap.lens_probs.numpy(), strings, cap.lens_layers))
    assert read_metadata(path)["logit_lens_layers"] == [0, 3]
    shared = read_shared(path)
    assert shared.logit_lens_layers == [0, 3] and shared.logit_lens_ids.shape == (T, 2, 3)
    assert shared.lens_top(7, 3) == [(strings[int(i)], pytest.approx(float(p)))
                                     for i, p in zip(cap.lens_ids[7, 1], cap.lens_probs[7, 1])]
    assert shared.lens_top(7, 1) == []  # a layer the lens does not cover
    assert verify_shared(path) == []

    # A file written before the key existed covers every layer.
    old = str(tmp_path / "old.safetensors")
    full = capture(model, seqs[:1], None, attention=False, lens_top_k=3)[0]
    write_shared(old, seqs[0], 5, full.norms.numpy(), None, (full.lens_ids.numpy(), full.lens_probs.numpy(), strings))
    assert read_shared(old).logit_lens_layers == list(range(L))

    with pytest.raises(ValueError, match="do not match its 2 rows"):
        write_shared(str(tmp_path / "bad.safetensors"), seqs[0], 5, cap.norms.numpy(), None,
                     (cap.lens_ids.numpy(), cap.lens_probs.numpy(), strings, [0, 1, 3]))
    assert np.array_equal(read_shared(path).logit_lens_ids, cap.lens_ids.numpy())

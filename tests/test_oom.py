"""Batches by count and token budget, and out-of-memory back-off (traitflow.model.batching).

The back-off is tested with an injected out-of-memory error raised by the model's
forward pass above k tokens: the outputs must equal those of the run without it.
"""

import logging

import pytest
import torch

from traitflow.model.batching import SimulatedOutOfMemoryError, inject_oom, plan_batches, run_batched
from traitflow.core.errors import TraitflowError


def test_batches_group_by_length_and_respect_count_and_token_budget():
    lengths = [5, 50, 6, 7, 48, 300, 8]
    batches = plan_batches(lengths, batch_size=3, token_budget=200)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3
        assert len(b) * max(lengths[i] for i in b) <= 200 or len(b) == 1
    assert batches == [[0, 2, 3], [6, 4, 1], [5]]  # shortest first; 300 tokens alone, over budget
    assert plan_batches(lengths, batch_size=8) == [[0, 2, 3, 6, 4, 1, 5]]
    assert plan_batches([10] * 5, batch_size=8, token_budget=25) == [[0, 1], [2, 3], [4]]
    assert plan_batches([], 4) == []


def test_out_of_memory_halves_the_batch_down_to_one_and_logs_it(caplog):
    lengths = [10, 11, 12, 13, 14, 15, 16, 17]
    calls, succeeded, done = [], [], {}

    def run_batch(indices):
        calls.append(list(indices))
        if len(indices) * max(lengths[i] for i in indices) > 30:  # "runs out of memory" above 30 tokens
            raise SimulatedOutOfMemoryError("CUDA out of memory")
        succeeded.append(list(indices))
        for i in indices:
            done[i] = lengths[i] * 2

    with caplog.at_level(logging.WARNING):
        run_batched(lengths, 8, run_batch)
    assert done == {i: n * 2 for i, n in enumerate(lengths)}
    assert calls[0] == list(range(8)) and calls[1] == [0, 1, 2, 3]
    assert succeeded == [[0, 1], [2, 3], [4, 5], [6], [7]]
    assert "out of GPU memory on a batch of 8 prompts (up to 17 tokens each): retrying as 4 + 4" in caplog.text


def test_one_sequence_that_does_not_fit_names_itself_its_length_and_the_fix():
    def run_batch(indices):
        if any(i == 2 for i in indices):
            raise SimulatedOutOfMemoryError("CUDA out of memory")

    with pytest.raises(TraitflowError) as info:
        run_batched([4, 5, 900, 6], 4, run_batch, labels=["a", "b", "prompt 7 of shard 1", "d"])
    assert str(info.value).startswith("prompt 7 of shard 1: runs out of GPU memory on its own (900 tokens); fix: ")
    assert "max_batch_tokens" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(TraitflowError, match=r"^example 0: .* \(3 tokens\)"):
        run_batched([3], 1, lambda ix: (_ for _ in ()).throw(SimulatedOutOfMemoryError()), what="example")


def test_other_errors_are_not_retried():
    calls = []

    def run_batch(indices):
        calls.append(indices)
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        run_batched([1, 2, 3], 4, run_batch)
    assert len(calls) == 1


def test_torch_out_of_memory_is_caught():
    done = []

    def run_batch(indices):
        if len(indices) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        done.extend(indices)

    run_batched([3, 4, 5], 4, run_batch)
    assert sorted(done) == [0, 1, 2]


# ---- with a model: outputs under injected out-of-memory equal those without -----------------------

@pytest.fixture(scope="module")
def demo(demo_model_dir):
    from traitflow.model.modeling import load_model, load_tokenizer

    return load_model(demo_model_dir, "cpu", "float32", eager=False), load_tokenizer(demo_model_dir)


PROMPTS = ["What is the capital of France?", "Hi", "Tell me a short story about a dragon who reads.",
           "Is the moon landing fake?", "Explain photosynthesis simply, please, for a child of seven."]


def test_generation_under_injected_oom_equals_the_run_without_it(demo, caplog):
    from traitflow.model.generate import encode_prompt, generate, stop_ids

    model, tok = demo
    ids = [encode_prompt(tok, p, chat_template=True) for p in PROMPTS]
    run = lambda: generate(model, ids, stop_ids(model, tok), 10, temperature=0.8, top_p=0.9, seed=1,  # noqa: E731
                           batch_size=8)
    reference = run()
    k = 2 * (max(len(i) for i in ids) + 10)  # at most two sequences fit, at any step of decoding
    with inject_oom(model, k) as seen, caplog.at_level(logging.WARNING):
        assert run() == reference
    assert max(seen) > k  # the error did fire
    assert "out of GPU memory on a batch of 5 prompts" in caplog.text
    with inject_oom(model, 5), pytest.raises(TraitflowError, match=r"^prompt \d: runs out of GPU memory on its own"):
        run()


def test_extraction_under_injected_oom_equals_the_run_without_it(demo):
    from traitflow.model.extract import example_features

    model, tok = demo
    reference = example_features(model, tok, PROMPTS, batch_size=8)
    with inject_oom(model, 30) as seen:
        again = example_features(model, tok, PROMPTS, batch_size=8)
    assert max(seen) > 30
    torch.testing.assert_close(again, reference, rtol=1e-5, atol=1e-5)
    # and one example at a time (no padding at all) gives the same features
    torch.testing.assert_close(example_features(model, tok, PROMPTS, batch_size=1), reference, rtol=1e-5, atol=1e-5)

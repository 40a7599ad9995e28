"""Batches sized by count and by tokens, and halving them on out-of-memory.

Every stage that runs a model over many sequences (generation, capture,
extraction) groups them with plan_batches and runs them with run_batched:

- sequences of similar length share a batch (sorted by length), so little is padding;
- a batch holds at most batch_size sequences and at most token_budget padded
  tokens (len(batch) * longest), so a few long prompts never land in a batch
  sized for short ones; a single over-budget sequence still gets its own batch;
- on CUDA out-of-memory, the batch is split in halves and retried, recursively,
  down to one sequence; a single sequence that still does not fit is one line
  naming it, its length and the fix.

Batch composition is a speed setting only: callers make each sequence's result
independent of its batch-mates (per-sequence random streams, masks and position
ids for padding), so batch_size and token_budget never trigger a rerun.

Importing this module does not import torch.
"""

import logging
import sys
from contextlib import contextmanager

from ..core.errors import TraitflowError

log = logging.getLogger(__name__)


class SimulatedOutOfMemoryError(RuntimeError):
    """Stands in for torch.cuda.OutOfMemoryError in tests (see inject_oom)."""


# Errors that mean "this batch did not fit": torch's CUDA out-of-memory error is added at
# call time when torch is loaded. Tests may extend the tuple.
OOM_ERRORS = (SimulatedOutOfMemoryError,)


def _oom_errors():
    errors = tuple(OOM_ERRORS)
    torch = sys.modules.get("torch")
    if torch is not None:
        oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
        if oom is not None:
            errors += (oom,)
    return errors


def _empty_cache():
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def plan_batches(lengths, batch_size, token_budget=None):
    """Indices into lengths grouped by similar length, shortest first.

    Each batch holds at most batch_size indices and, when token_budget is set,
    at most token_budget padded tokens (len(batch) * its longest length); a
    single sequence longer than the budget gets a batch of its own.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches, current, longest = [], [], 0
    for i in order:
        width = max(longest, lengths[i])
        fits = len(current) < batch_size and (token_budget is None or (len(current) + 1) * width <= token_budget)
        if current and not fits:
            batches.append(current)
            current, longest = [], 0
            width = lengths[i]
        current.append(i)
        longest = width
    if current:
        batches.append(current)
    return batches


def run_batched(lengths, batch_size, run_batch, what="prompt", token_budget=None, labels=None):
    """Call run_batch(indices) for every planned batch, halving a batch on out-of-memory.

    run_batch must write its results per index and be safe to call again for a
    part of a batch that failed. A single sequence that runs out of memory
    raises a TraitflowError naming labels[i] (default f"{what} {i}") and its
    length in tokens.
    """
    for batch in plan_batches(lengths, batch_size, token_budget):
        _run_halving(batch, lengths, run_batch, what, labels)


def _run_halving(batch, lengths, run_batch, what, labels):
    errors = _oom_errors()
    try:
        run_batch(batch)
        return
    except errors as err:
        failure = err
    # Free what the failed attempt held before retrying (outside the except block,
    # which would keep the traceback, and with it the batch's tensors, alive).
    del failure
    _empty_cache()
    if len(batch) == 1:
        i = batch[0]
        name = labels[i] if labels is not None else f"{what} {i}"
        raise TraitflowError(name, f"runs out of GPU memory on its own ({lengths[i]} tokens)",
                             "lower capture.max_batch_tokens or the batch size, shorten the prompt (or "
                             "generation.max_new_tokens), or use a smaller dtype (capture.dtype: bfloat16)")
    half = (len(batch) + 1) // 2
    longest = max(lengths[i] for i in batch)
    log.warning("out of GPU memory on a batch of %d %ss (up to %d tokens each): retrying as %d + %d",
                len(batch), what, longest, half, len(batch) - half)
    for part in (batch[:half], batch[half:]):
        _run_halving(part, lengths, run_batch, what, labels)


@contextmanager
def inject_oom(model, above_tokens, error=None):
    """Make model's forward pass raise out-of-memory when it sees more than above_tokens.

    "Tokens" counts the attention mask (batch x context, KV cache included) or,
    without a mask, the input ids. For tests: with it, outputs must equal those
    of a run without it. error defaults to torch's CUDA out-of-memory error.
    """
    import torch

    exc = error or getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    seen = []

    def hook(module, args, kwargs):
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids", args[0] if args else None)
        n = mask.numel() if mask is not None else ids.numel()
        seen.append(n)
        if n > above_tokens:
            raise exc(f"simulated: CUDA out of memory ({n} tokens > {above_tokens})")

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()

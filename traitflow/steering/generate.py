"""Steered generation: batched, left-padded, KV-cached, with the intervention on the prompt pass and on
every decode step.

Each row is one (prompt, condition): its own delta at its own layer, or a direction ablated, and the
positions steered: `all`, `prompt` (the prompt pass only) or `response` (the positions whose input is a
generated token: every decode step). Sampling is traitflow.model.generate's: greedy at temperature 0,
else one random stream per prompt (seeded from the seed and the prompt's token ids), so a row's
response depends on its prompt and condition only, never on its batch-mates.
"""

from dataclasses import dataclass

import torch

from .hooks import Steer, steering_hooks
from ..model.batching import run_batched
from ..model.generate import _until_stop, decode, prompt_seed

POSITIONS = ("all", "prompt", "response")


@dataclass
class Row:
    prompt_ids: list
    layer: int | None = None  # where delta is added (the output of this decoder layer)
    delta: torch.Tensor | None = None  # [d]: coefficient x unit direction; None: nothing added
    ablate: torch.Tensor | None = None  # [d] unit direction projected out at every layer; None: none
    position: str = "all"


def batch_steer(rows, d_model, device, dtype):
    """The Steer of a batch of rows: zero deltas for rows without one (they pass through unchanged)."""
    deltas = {}
    for b, row in enumerate(rows):
        if row.delta is not None:
            deltas.setdefault(row.layer, torch.zeros(len(rows), d_model, dtype=dtype, device=device))
            deltas[row.layer][b] = row.delta.to(device, dtype)
    ablate = None
    if any(row.ablate is not None for row in rows):
        ablate = torch.zeros(len(rows), d_model, dtype=torch.float32, device=device)
        for b, row in enumerate(rows):
            if row.ablate is not None:
                ablate[b] = row.ablate.to(device, torch.float32)
    return Steer(deltas, ablate)


def steered_where(rows, mask, prompt_width, device):
    """[B, prompt_width + n] 0/1: which columns each row steers (real tokens only; prompt columns come first)."""
    on_prompt = torch.tensor([r.position in ("all", "prompt") for r in rows], device=device)
    on_response = torch.tensor([r.position in ("all", "response") for r in rows], device=device)
    col = torch.arange(mask.shape[1], device=device)[None, :]
    return mask.bool() & torch.where(col < prompt_width, on_prompt[:, None], on_response[:, None])


@torch.no_grad()
def steered_generate(model, rows, stop, max_new_tokens, temperature=0.0, top_p=1.0, seed=0, batch_size=8,
                     token_budget=None, labels=None):
    """One list of response token ids per row (stop token excluded), each generated under its row's steering."""
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    stop_t = torch.tensor(stop, device=device, dtype=torch.long)
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    d_model = model.config.hidden_size
    out = [None] * len(rows)

    def run_batch(group):
        batch = [rows[i] for i in group]
        generators = [torch.Generator(device=device).manual_seed(prompt_seed(seed, r.prompt_ids)) for r in batch]
        steer, columns = batch_steer(batch, d_model, device, dtype), []

        def before_step(step, mask, width):
            if not columns:  # the prompt pass: which columns of every pass this batch steers
                columns.append(steered_where(batch, mask, width, device))
            steer.where = columns[0][:, :width + step]  # the hooks read the last columns: this pass's tokens

        with steering_hooks(model, steer):
            tokens = decode(model, [r.prompt_ids for r in batch], stop_t, pad_id, max_new_tokens, temperature,
                            top_p, generators, before_step)
        for i, row in zip(group, tokens):
            out[i] = _until_stop(row, set(stop))

    lengths = [len(r.prompt_ids) + max_new_tokens for r in rows]
    run_batched(lengths, batch_size, run_batch, what="row", token_budget=token_budget, labels=labels)
    return out

"""What a steered response is worth, measured by the unsteered model: one teacher-forced pass per batch.

- nll: the unsteered model's negative log-likelihood per token of the response (fluency: a degenerate
  or off-distribution response costs more nats per token);
- read_back: the mean projection h . v / ||v|| of the response's rows at a layer's residual_out (response
  token j's row is the position where token j is the input, as in the captures);
- residual norms: the mean ||residual_out|| of every layer over the real tokens, the first token of each
  sequence left out (real models park huge norms on it), from which coefficients are scaled;
- distinct2: distinct token bigrams / bigrams of the response (1 for fewer than two tokens).
"""

import math

import torch

from ..model.batching import run_batched
from ..model.capture import left_pad
from ..model.hooks import residual_hooks


def distinct2(tokens):
    pairs = list(zip(tokens, tokens[1:]))
    return len(set(pairs)) / len(pairs) if pairs else 1.0


@torch.no_grad()
def teacher_forced(model, prompts, responses, read_layers=None, read_units=None, batch_size=8, token_budget=None,
                   norms=False):
    """Per sequence: {"nll", "read_back" (list, one per read_layers[i] / read_units[i]: [d] unit vectors)};
    with norms, also the per-layer sum of residual norms and the token count they cover ("norm_sum", "norm_n").

    read_layers[i] and read_units[i] are per sequence (each row may be read back at its own layer).
    """
    device = next(model.parameters()).device
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    n_layer = model.config.num_hidden_layers
    sequences = [list(p) + list(r) for p, r in zip(prompts, responses)]
    results = [None] * len(sequences)

    def run_batch(group):
        ids, mask, positions = left_pad([sequences[i] for i in group], pad_id, device)
        B, T = ids.shape
        starts = [T - len(sequences[i]) for i in group]
        resp = torch.zeros(B, T, device=device)  # response rows (token j's row: where it is the input)
        for b, i in enumerate(group):
            resp[b, starts[b] + len(prompts[i]):] = 1
        wanted = sorted({read_layers[i] for i in group}) if read_layers is not None else []
        units = torch.stack([read_units[i].to(device, torch.float32) for i in group]) if wanted else None
        reads = {}
        norm_sum = torch.zeros(B, n_layer, device=device)
        real = mask.float().clone()
        real[torch.arange(B), torch.tensor(starts, device=device)] = 0  # each sequence's first token left out

        def on_residual(layer, point, h):
            if point != 2:
                return
            h = h.float()
            if layer in wanted:
                reads[layer] = ((h * units[:, None, :]).sum(-1) * resp).sum(-1) / resp.sum(-1).clamp_min(1)
            if norms:
                norm_sum[:, layer] = (h.norm(dim=-1) * real).sum(-1)

        layers = sorted(set(wanted) | (set(range(n_layer)) if norms else set()))
        with residual_hooks(model, on_residual, layers=layers):
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).logits
        logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
        nll = -(logp * resp[:, 1:]).sum(-1) / resp[:, 1:].sum(-1).clamp_min(1)
        for b, i in enumerate(group):
            n_resp = len(responses[i])
            result = {"nll": float(nll[b]) if n_resp else math.nan}
            if wanted:
                result["read_back"] = float(reads[read_layers[i]][b]) if n_resp else math.nan
            if norms:
                result["norm_sum"] = norm_sum[b].tolist()
                result["norm_n"] = int(real[b].sum())
            results[i] = result

    run_batched([len(s) for s in sequences], batch_size, run_batch, what="sequence", token_budget=token_budget)
    return results

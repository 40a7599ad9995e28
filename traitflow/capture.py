"""Teacher-forced capture: one forward pass over prompt + response tokens.

With causal attention, the residual stream and the attention row at position t
of a teacher-forced pass are exactly what KV-cached decoding computed when
token t was the input, so one pass replaces the original per-token recompute.
Projections happen inside the hooks, on the model's device, so only
[tokens, layers, 3, n_vectors] floats come back to the host.
"""

from dataclasses import dataclass

import torch

from .hooks import residual_hooks
from .modeling import n_layers


@dataclass
class SequenceCapture:
    projections: torch.Tensor  # [tokens, layers, 3, n_vectors] float32
    attention: torch.Tensor | None  # [layers, tokens, tokens] head-mean, float32
    residuals: torch.Tensor | None  # [tokens, layers, 3, d_model] float32


def left_pad(sequences, pad_id, device):
    """Batch token lists with left padding; positions count real tokens only."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for b, seq in enumerate(sequences):
        ids[b, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
        mask[b, width - len(seq):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


def unit_vectors(vectors, device):
    """[n, d] float32 unit rows: projection is h . v / ||v||."""
    v = torch.as_tensor(vectors, dtype=torch.float32, device=device).reshape(-1, vectors.shape[-1])
    return v / v.norm(dim=-1, keepdim=True)


def batches(sequences, batch_size):
    """Index groups of similar length, so batches carry little padding."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    return [order[k:k + batch_size] for k in range(0, len(order), batch_size)]


@torch.no_grad()
def capture(model, sequences, vectors=None, batch_size=8, attention=True, keep_residuals=False):
    """Capture every (token, layer, point) of each token sequence.

    sequences: list of token-id lists. vectors: [n_vectors, d_model] (or None).
    Returns one SequenceCapture per sequence, in input order, on the CPU.
    """
    device = next(model.parameters()).device
    n_layer, d_model = n_layers(model), model.config.hidden_size
    units = unit_vectors(vectors, device) if vectors is not None else torch.zeros(0, d_model, device=device)
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    results = [None] * len(sequences)

    for group in batches(sequences, batch_size):
        ids, mask, positions = left_pad([sequences[i] for i in group], pad_id, device)
        B, T = ids.shape
        proj = torch.empty(B, T, n_layer, 3, len(units), device=device)
        resid = torch.empty(B, T, n_layer, 3, d_model, device=device) if keep_residuals else None
        attn = torch.empty(B, n_layer, T, T, device=device) if attention else None

        def on_residual(layer, point, h):
            h = h.float()
            proj[:, :, layer, point] = h @ units.T
            if resid is not None:
                resid[:, :, layer, point] = h

        def on_attention(layer, weights):
            attn[:, layer] = weights.float().mean(dim=1)

        with residual_hooks(model, on_residual, on_attention if attention else None):
            model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False, logits_to_keep=1)

        proj, resid, attn = (x.cpu() if x is not None else None for x in (proj, resid, attn))
        for b, i in enumerate(group):
            start = T - len(sequences[i])
            results[i] = SequenceCapture(
                projections=proj[b, start:],
                attention=attn[b, :, start:, start:] if attn is not None else None,
                residuals=resid[b, start:] if resid is not None else None,
            )
    return results

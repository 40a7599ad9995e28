"""Teacher-forced capture: one forward pass over prompt + response tokens, every trait at once.

With causal attention, the residual stream and the attention row at position t
of a teacher-forced pass are exactly what KV-cached decoding computed when
token t was the input, so one pass replaces the original per-token recompute.
Everything is reduced inside the hooks, on the model's device, so only small
tensors come back to the host: projections onto every vector
[tokens, layers, 3, n_vectors], residual norms [tokens, layers, 3], attention as
16-bit fixed point (traitflow.core.shared) and the logit lens' top-k.
"""

from dataclasses import dataclass

import torch

from .batching import run_batched
from .hooks import residual_hooks
from .lens import LogitLens
from .modeling import n_layers
from ..core.shared import ATTENTION_SCALE


@dataclass
class SequenceCapture:
    projections: torch.Tensor  # [tokens, layers, 3, n_vectors] float32
    norms: torch.Tensor  # [tokens, layers, 3] float32: ||h||
    attention_codes: torch.Tensor | None  # [layers, tokens, tokens] uint16 head-mean, weight = code / 65535
    residuals: torch.Tensor | None  # [tokens, layers, 3, d_model] float32
    lens_ids: torch.Tensor | None = None  # [tokens, lens layers, k] int64: top-k next tokens from residual_out
    lens_probs: torch.Tensor | None = None  # [tokens, lens layers, k] float32
    lens_layers: list | None = None  # the layers of lens_ids' second axis (capture.logit_lens_layers)

    @property
    def attention(self):
        """[layers, tokens, tokens] float32 head-mean weights (max abs error 7.6e-6)."""
        return None if self.attention_codes is None else self.attention_codes.float() / ATTENTION_SCALE


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
    """[n, d] float32 unit rows: projection is h . v / ||v|| (normalised without overflow: vectors.unit_rows)."""
    from ..experiment.vectors import unit_rows

    return unit_rows(vectors).to(device)


def batches(sequences, batch_size):
    """Index groups of similar length, so batches carry little padding."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    return [order[k:k + batch_size] for k in range(0, len(order), batch_size)]


@torch.no_grad()
def capture(model, sequences, vectors=None, batch_size=8, attention=True, keep_residuals=False, lens_top_k=0,
            token_budget=None, labels=None, lens_layers=None):
    """Capture every (token, layer, point) of each token sequence.

    sequences: list of token-id lists. vectors: [n_vectors, d_model] (or None).
    lens_top_k > 0 adds the logit lens (top-k next tokens from residual_out) at lens_layers (None: every layer).
    Batches hold at most batch_size sequences and token_budget padded tokens, and are
    halved on CUDA out-of-memory (traitflow.model.batching; labels name the sequences in errors).
    Returns one SequenceCapture per sequence, in input order, on the CPU.
    """
    device = next(model.parameters()).device
    n_layer, d_model = n_layers(model), model.config.hidden_size
    units = unit_vectors(vectors, device) if vectors is not None else torch.zeros(0, d_model, device=device)
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    lens = LogitLens(model, lens_top_k, lens_layers) if lens_top_k else None
    results = [None] * len(sequences)

    def run_batch(group):
        ids, mask, positions = left_pad([sequences[i] for i in group], pad_id, device)
        B, T = ids.shape
        proj = torch.empty(B, T, n_layer, 3, len(units), device=device)
        norms = torch.empty(B, T, n_layer, 3, device=device)
        resid = torch.empty(B, T, n_layer, 3, d_model, device=device) if keep_residuals else None
        # Attention goes to the host layer by layer as uint16 codes: [B, layers, T, T] float32 on
        # the device would be 3.3 GB at T = 2,000 and B = 8.
        attn = torch.empty(B, n_layer, T, T, dtype=torch.uint16) if attention else None
        n_lens = len(lens.layers) if lens else 0
        lens_ids = torch.empty(B, T, n_lens, lens_top_k, dtype=torch.long, device=device) if lens else None
        lens_probs = torch.empty(B, T, n_lens, lens_top_k, device=device) if lens else None

        def on_residual(layer, point, h):
            if lens is not None and point == 2 and layer in lens.row:  # in the model's dtype
                lens_ids[:, :, lens.row[layer]], lens_probs[:, :, lens.row[layer]] = lens.top_k(h)
            h = h.float()
            proj[:, :, layer, point] = h @ units.T
            norms[:, :, layer, point] = h.norm(dim=-1)
            if resid is not None:
                resid[:, :, layer, point] = h

        def on_attention(layer, weights):
            codes = (weights.float().mean(dim=1) * ATTENTION_SCALE).round_().to(torch.int32)
            attn[:, layer] = codes.cpu().to(torch.uint16)

        with residual_hooks(model, on_residual, on_attention if attention else None):
            model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False, logits_to_keep=1)

        host = lambda x: x.cpu() if x is not None else None  # noqa: E731
        proj, norms, resid, lens_ids, lens_probs = map(host, (proj, norms, resid, lens_ids, lens_probs))
        for b, i in enumerate(group):
            start = T - len(sequences[i])
            # clone: a view would keep the whole batch's storage alive (and be saved with it).
            results[i] = SequenceCapture(
                projections=proj[b, start:].clone(),
                norms=norms[b, start:].clone(),
                attention_codes=attn[b, :, start:, start:].clone() if attn is not None else None,
                residuals=resid[b, start:].clone() if resid is not None else None,
                lens_ids=lens_ids[b, start:].clone() if lens_ids is not None else None,
                lens_probs=lens_probs[b, start:].clone() if lens_probs is not None else None,
                lens_layers=list(lens.layers) if lens else None,
            )

    run_batched([len(s) for s in sequences], batch_size, run_batch, what="sequence", token_budget=token_budget,
                labels=labels)
    return results

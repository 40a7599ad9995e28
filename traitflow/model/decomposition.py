"""A trait's decomposition at one layer: how much the attention and MLP blocks, each head and each
neuron add to the residual stream along the trait vector, over prompt then response tokens.

Reads the trait-independent internals traitflow.model.single_layer captured and one decoder block
(a loaded model's layer_block, or traitflow.model.layer_weights' weights-only block); runs no forward
pass. prepare_decomposition() holds the trait-independent part, decompose_prepared() is per trait.
"""

import torch

from .arch import architecture_for, get_module
from .capture import unit_vectors
from ..core.constants import SUBLAYERS
from .single_layer import RESIDUAL


def _joined(internals, kind, name, device):
    """[tokens, width] float32 over prompt then response."""
    sides = internals["internals"]
    return torch.cat([sides["prompt"][kind][name], sides["response"][kind][name]]).to(device, torch.float32)


def block_scale(norm, y):
    """(scale [T, 1], gain [1, d]) with norm(y)[t] == scale[t] * gain * y[t], or (None, None) for no norm.

    An RMSNorm is a per-token scalar times a fixed elementwise gain. norm(ones) gives
    the gain up to a constant and a least-squares fit of norm(y) recovers each token's
    scalar exactly, whatever the family's weight offset or epsilon. Neither depends on
    the trait: the trait direction seen through the norm is scale[t] * gain * unit.
    """
    if norm is None:
        return None, None
    gain = norm(torch.ones_like(y[:1])).float()
    normed, gy = norm(y).float(), gain * y
    scale = (normed * gy).sum(-1, keepdim=True) / (gy * gy).sum(-1, keepdim=True).clamp_min(torch.finfo(y.dtype).tiny)
    return scale, gain


def block_directions(norm, y, unit):
    """Per-token directions u[T, d] with norm(y)[t] . unit == y[t] . u[t] (None: no norm)."""
    scale, gain = block_scale(norm, y)
    return unit.expand_as(y) if scale is None else scale * gain * unit


@torch.no_grad()
def prepare_decomposition(block, config, internals):
    """Everything in a decomposition that does not depend on the trait, for one (prompt, layer).

    block: that decoder layer (layer_block(model, L) of a loaded model, or
    load_layers()'s weights-only block); config: the model's transformers config.
    Per block output (attention through o_proj, MLP through down_proj): its input x,
    its output y = x W^T + b, the weight, and the output norm's per-token scale and
    gain (block_scale). decompose_prepared() then costs O(tokens x width) per trait.
    """
    arch = architecture_for(config)
    attn, mlp = get_module(block, arch.attn), get_module(block, arch.mlp)
    if getattr(attn, "layer_idx", internals["layer"]) != internals["layer"]:
        raise ValueError(f"block is layer {attn.layer_idx}, the internals are layer {internals['layer']}")
    device = next(block.parameters()).device
    prepared = {"device": device, "head_dim": attn.head_dim,
                "residual": {name: _joined(internals, "residual", r, device) for name, r in zip(SUBLAYERS, RESIDUAL)}}
    for name, x, linear, norm_name in (
            ("attn", _joined(internals, "attention", "z", device), get_module(attn, arch.o_proj), arch.attn_out_norm),
            ("mlp", _joined(internals, "mlp", "neurons", device), get_module(mlp, arch.down_proj), arch.mlp_out_norm)):
        weight, bias = linear.weight.float(), None if linear.bias is None else linear.bias.float()
        y = x @ weight.T + (bias if bias is not None else 0)
        scale, gain = block_scale(get_module(block, norm_name) if norm_name else None, y)
        prepared[name] = {"x": x, "y": y, "weight": weight, "bias": bias, "scale": scale, "gain": gain}
    return prepared


@torch.no_grad()
def decompose_prepared(prepared, vector, top_k=20):
    """One trait's decomposition from prepare_decomposition()'s trait-independent part.

    With u[t] = scale[t] * gain * unit the trait direction through the output norm,
    a block's contribution is y[t] . u[t] and input unit i's share x[t, i] (u[t] W)[i]
    = x[t, i] scale[t] ((gain * unit) W)[i]: one vector-matrix product per trait.
    """
    unit = unit_vectors(vector, prepared["device"])[0]
    out = {name: h @ unit for name, h in prepared["residual"].items()}
    parts = {}
    for name in ("attn", "mlp"):
        p = prepared[name]
        direction = unit if p["gain"] is None else (p["gain"] * unit)[0]  # [d]
        through = direction @ p["weight"]  # [n_in]
        if p["scale"] is None:
            out[f"{name}_contribution"] = p["y"] @ direction
            parts[name] = p["x"] * through  # [T, n_in]: each input unit's share
        else:
            out[f"{name}_contribution"] = p["scale"][:, 0] * (p["y"] @ direction)
            parts[name] = p["x"] * (p["scale"] * through)
        if p["bias"] is not None:
            bias = direction @ p["bias"]
            out[f"{name}_bias_contribution"] = (bias.expand(len(p["y"])) if p["scale"] is None
                                                else p["scale"][:, 0] * bias)

    T = parts["attn"].shape[0]
    out["head_contributions"] = parts["attn"].view(T, -1, prepared["head_dim"]).sum(-1).T
    neurons = parts["mlp"]
    mean_abs = neurons.abs().mean(0)
    order = mean_abs.topk(min(top_k, neurons.shape[1])).indices
    top = {"indices": order.tolist(), "contributions": neurons[:, order].T, "mean_abs_contribution": mean_abs[order]}
    cpu = lambda d: {k: v.cpu().contiguous() if isinstance(v, torch.Tensor) else v for k, v in d.items()}
    return cpu(out), cpu(top)


def decompose(block, config, internals, vector, top_k=20):
    """The trait's decomposition at the internals' layer, over prompt then response tokens.

    The attention and MLP contributions are the blocks' outputs (after Gemma-2's
    post-norms) projected on the unit vector: residual deltas after_attn - residual_in
    and residual_out - after_attn. Head h's share uses the post-attention norm's
    per-token scale of the whole block output, which all heads share, so the heads
    (plus o_proj's bias, if any) add up to the attention contribution exactly; the
    same holds for neurons and the MLP contribution. For several traits, call
    prepare_decomposition() once and decompose_prepared() per trait.
    """
    return decompose_prepared(prepare_decomposition(block, config, internals), vector, top_k)

"""Forward hooks that steer: add a per-row vector to the output of decoder layer L, or project a
per-row direction out of the residual stream at every layer.

`layer{L}` is the vectors' convention: the output of decoder layer L (residual_out), so a vector read
at layer{L} is added where it was read. Each row of a batch carries its own delta (rows of a batch may
be different traits, ratios and controls; a zero row is an unsteered sequence), and the caller says
which positions of the current forward pass are steered (`Steer.where`, [B, T]): the prompt pass and
every decode step under a KV cache, or each step of an uncached recomputation.
"""

from contextlib import contextmanager

from ..model.arch import architecture_for, get_module


class Steer:
    """What the hooks add: deltas {layer: [B, d]}, ablate [B, d] unit rows (zero: none), where [B, T] (0/1)."""

    def __init__(self, deltas, ablate=None):
        self.deltas, self.ablate, self.where = deltas, ablate, None

    def add(self, layer, h):
        w = self.where[:, -h.shape[1]:, None].to(h.dtype)
        return h + w * self.deltas[layer][:, None, :].to(h.dtype)

    def project_out(self, h):
        u = self.ablate[:, None, :].to(h.dtype)
        w = self.where[:, -h.shape[1]:, None].to(h.dtype)
        return h - w * (h * u).sum(-1, keepdim=True) * u


def _replace_first(out, h):
    return (h, *out[1:]) if isinstance(out, tuple) else h


@contextmanager
def steering_hooks(model, steer):
    """Install steer's hooks on model for the duration of the block."""
    arch = architecture_for(model.config)
    decoder = get_module(model, arch.layers)
    handles = []

    def on_output(layer):
        def hook(module, args, out):
            h = out[0] if isinstance(out, tuple) else out
            if steer.ablate is not None:
                h = steer.project_out(h)
            if layer in steer.deltas:
                h = steer.add(layer, h)
            return _replace_first(out, h)
        return hook

    def on_first_input(module, args, kwargs):
        # Ablation covers the embeddings too (the residual stream before layer 0).
        if args:
            return (steer.project_out(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": steer.project_out(kwargs["hidden_states"])}

    try:
        layers = range(len(decoder)) if steer.ablate is not None else sorted(steer.deltas)
        for l in layers:
            handles.append(decoder[l].register_forward_hook(on_output(l)))
        if steer.ablate is not None:
            handles.append(decoder[0].register_forward_pre_hook(on_first_input, with_kwargs=True))
        yield steer
    finally:
        for h in handles:
            h.remove()

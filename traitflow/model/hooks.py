"""Forward hooks on the three residual points of every decoder layer, and on attention.

Point p of layer l, in file order (traitflow.SUBLAYERS):
  0 residual_in   input of decoder layer l            (TransformerLens: resid_pre)
  1 after_attn    residual after the attention block  (resid_mid)
  2 residual_out  output of decoder layer l           (resid_post)
"""

from contextlib import contextmanager

from .arch import architecture_for, get_module


def _first_tensor(x):
    return x[0] if isinstance(x, tuple) else x


@contextmanager
def residual_hooks(model, on_residual, on_attention=None, layers=None):
    """Call on_residual(layer, point, h[B, T, d]) at every point of the chosen layers.

    With on_attention, also call on_attention(layer, weights[B, heads, T_q, T_k]);
    that needs an eager attention implementation (others return no weights).
    """
    arch = architecture_for(model.config)
    decoder = get_module(model, arch.layers)
    layers = range(len(decoder)) if layers is None else layers
    handles = []

    try:
        for l in layers:
            block = decoder[l]
            handles.append(block.register_forward_pre_hook(
                lambda m, a, k, l=l: on_residual(l, 0, a[0] if a else k["hidden_states"]), with_kwargs=True))
            handles.append(get_module(block, arch.after_attn_input_of).register_forward_pre_hook(
                lambda m, a, l=l: on_residual(l, 1, a[0])))
            handles.append(block.register_forward_hook(
                lambda m, a, out, l=l: on_residual(l, 2, _first_tensor(out))))
            if on_attention is not None:
                handles.append(get_module(block, arch.attn).register_forward_hook(
                    lambda m, a, out, l=l: on_attention(l, out[1])))
        yield
    finally:
        for h in handles:
            h.remove()

"""The architecture table: which module is which residual point.

This is the one place that knows module names. Supporting a new decoder family
means adding a row to ARCHITECTURES; nothing else in the package branches on
the model's name.
"""

from dataclasses import dataclass

from ..core.errors import TraitflowError


@dataclass(frozen=True)
class Architecture:
    layers: str  # dotted path from the CausalLM to the ModuleList of decoder layers
    # Module (relative to a decoder layer) whose *input* is the raw residual stream
    # after the attention block has been added.
    after_attn_input_of: str
    # Norm applied to the attention output before it is added to the residual
    # (Gemma-2's sandwich norm), or None when the o_proj output is added directly.
    attn_out_norm: str | None
    # Norm applied to the MLP output before it is added to the residual, or None.
    mlp_out_norm: str | None
    attn: str = "self_attn"
    # The logit lens: the final norm and the unembedding, as dotted paths from the CausalLM.
    final_norm: str = "model.norm"
    unembed: str = "lm_head"
    mlp: str = "mlp"
    # Single-layer capture: projections inside attn and mlp, the gate activation
    # module, and the rotary function, looked up in the attention class's module.
    q_proj: str = "q_proj"
    k_proj: str = "k_proj"
    v_proj: str = "v_proj"
    o_proj: str = "o_proj"
    up_proj: str = "up_proj"
    gate_act: str = "act_fn"
    down_proj: str = "down_proj"
    rotary: str = "apply_rotary_pos_emb"


_LLAMA_LIKE = Architecture(
    layers="model.layers",
    after_attn_input_of="post_attention_layernorm",
    attn_out_norm=None,
    mlp_out_norm=None,
)

ARCHITECTURES = {
    "gemma2": Architecture(
        layers="model.layers",
        after_attn_input_of="pre_feedforward_layernorm",
        attn_out_norm="post_attention_layernorm",
        mlp_out_norm="post_feedforward_layernorm",
    ),
    "llama": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
}


def architecture_for(config, where="model"):
    """Return the table row for a transformers config (by its model_type)."""
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise TraitflowError(
            where,
            f"unsupported architecture '{model_type}' (supported: {', '.join(sorted(ARCHITECTURES))})",
            "add a row for it to ARCHITECTURES in traitflow/model/arch.py",
        )
    return ARCHITECTURES[model_type]


def get_module(root, dotted):
    for part in dotted.split("."):
        root = getattr(root, part)
    return root


def decoder_layers(model):
    return get_module(model, architecture_for(model.config).layers)

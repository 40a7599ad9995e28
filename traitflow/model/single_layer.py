"""Single-layer deep dive: every internal tensor of chosen layers, and each trait's decomposition there.

Two files per (prompt, layer), so the large trait-independent tensors exist once:
  experiments/{exp}/inference/layer_internal_states/prompt_{i}_layer{L}.pt           internals_record()
      Q/K/V before and after rotary, per-head attention, MLP tensors, the three residual points
  experiments/{exp}/{trait}/inference/layer_internal_states/prompt_{i}_layer{L}.pt   trait_record()
      the trait's decomposition at that layer (+ .json for the viewer)
load_seed_format(trait_file) joins the two into the seed scripts' dict for old notebooks.

The per-trait stage runs no forward pass and loads no model: traitflow.model.layer_weights.load_layers()
reads only the chosen decoder layers' tensors from the checkpoint files into a skeleton built on the
meta device, and traitflow.model.decomposition.decompose() needs only that block (o_proj, down_proj,
Gemma-2's output norms). This module holds the capture and the two files' records.

Internals names (TransformerLens hook in brackets), [tokens, width] unless noted:
  attention: q_proj, k_proj, v_proj (hook_q/k/v, flattened heads, before rotary), q_rotary, k_rotary
             (hook_rot_q/k), z (hook_z: per-head outputs entering o_proj), attn_weights (hook_pattern:
             [heads, n, n] for the prompt; response token j: [heads, n_prompt + j + 1])
  mlp:       up_proj, gate_act (act(gate_proj)), neurons (hook_post: act(gate) * up, entering down_proj),
             down_proj (its output, before Gemma-2's post_feedforward_layernorm)
  residual:  input, after_attn, output (resid_pre, resid_mid, resid_post)
"""

import os
import sys
from contextlib import ExitStack, contextmanager

import torch

from .arch import architecture_for, get_module
from .batching import plan_batches
from .capture import left_pad
from ..core.constants import SUBLAYERS, __version__
from ..core.formats import load_pt, now

ATTENTION = ("q_proj", "k_proj", "v_proj", "q_rotary", "k_rotary", "z")
MLP = ("up_proj", "gate_act", "neurons", "down_proj")
RESIDUAL = ("input", "after_attn", "output")  # the SUBLAYERS points, under the seed's names
DECOMPOSITION = (*SUBLAYERS, "attn_contribution", "mlp_contribution")


class _Stop(Exception):
    """Raised after the last chosen layer: the layers above it and the LM head are not needed."""


def model_dims(model):
    """The sizes the file formats are checked against."""
    c, attn = model.config, get_module(layer_block(model, 0), architecture_for(model.config).attn)
    return {"n_layers": c.num_hidden_layers, "d_model": c.hidden_size, "n_heads": c.num_attention_heads,
            "n_kv_heads": c.num_key_value_heads, "head_dim": attn.head_dim, "d_mlp": c.intermediate_size}


def layer_block(model, layer):
    """Decoder layer `layer` of a loaded causal LM (the module decompose() takes)."""
    return get_module(model, architecture_for(model.config).layers)[layer]


@contextmanager
def internals_hooks(model, layers, on_tensor):
    """Call on_tensor(layer, group, name, x[B, T, ...]) for every internal tensor of the chosen layers.

    attn_weights arrive as [B, heads, T, T] (eager attention only). The forward
    pass stops with _Stop once the last chosen layer has run.
    """
    from .hooks import residual_hooks

    arch = architecture_for(model.config)
    attn_class = type(get_module(layer_block(model, 0), arch.attn))
    rotary = getattr(sys.modules[attn_class.__module__], arch.rotary)

    def output_hook(layer, group, name, stash=None):
        def hook(module, args, out):
            if stash is not None:
                stash[name] = out
            on_tensor(layer, group, name, out)
        return hook

    def rotate(layer, attn, stash):
        # The model's own rotary function, on the projections it just made.
        cos, sin = stash.pop("cos_sin")
        q, k = (stash.pop(n) for n in ("q_proj", "k_proj"))
        B, T = q.shape[:2]
        heads = [x.view(B, T, -1, attn.head_dim).transpose(1, 2) for x in (q, k)]
        for name, x in zip(("q_rotary", "k_rotary"), rotary(*heads, cos, sin)):
            on_tensor(layer, "attention", name, x.transpose(1, 2).reshape(B, T, -1))

    def stop(module, args, out):
        raise _Stop

    with ExitStack() as stack:
        stack.enter_context(residual_hooks(
            model, lambda l, point, h: on_tensor(l, "residual", RESIDUAL[point], h),
            lambda l, weights: on_tensor(l, "attention", "attn_weights", weights), layers=layers))
        handles = []
        stack.callback(lambda: [h.remove() for h in handles])
        for l in layers:
            block, stash = layer_block(model, l), {}
            attn, mlp = get_module(block, arch.attn), get_module(block, arch.mlp)
            handles += [
                get_module(attn, arch.q_proj).register_forward_hook(output_hook(l, "attention", "q_proj", stash)),
                get_module(attn, arch.k_proj).register_forward_hook(output_hook(l, "attention", "k_proj", stash)),
                get_module(attn, arch.v_proj).register_forward_hook(output_hook(l, "attention", "v_proj")),
                attn.register_forward_pre_hook(
                    lambda m, a, kw, stash=stash: stash.update(cos_sin=kw["position_embeddings"]), with_kwargs=True),
                attn.register_forward_hook(lambda m, a, out, l=l, attn=attn, stash=stash: rotate(l, attn, stash)),
                get_module(attn, arch.o_proj).register_forward_pre_hook(
                    lambda m, a, l=l: on_tensor(l, "attention", "z", a[0])),
                get_module(mlp, arch.up_proj).register_forward_hook(output_hook(l, "mlp", "up_proj")),
                get_module(mlp, arch.gate_act).register_forward_hook(output_hook(l, "mlp", "gate_act")),
                get_module(mlp, arch.down_proj).register_forward_pre_hook(
                    lambda m, a, l=l: on_tensor(l, "mlp", "neurons", a[0])),
                get_module(mlp, arch.down_proj).register_forward_hook(output_hook(l, "mlp", "down_proj")),
            ]
        # Registered after residual_hooks, so the last layer's output is recorded before the stop.
        handles.append(layer_block(model, max(layers)).register_forward_hook(stop))
        yield


@torch.no_grad()
def capture_internals(model, sequences, layers, batch_size=8):
    """Every internal tensor of the chosen layers, for each token sequence (teacher-forced).

    Returns, per sequence in input order, {layer: {"attention": {...}, "mlp": {...},
    "residual": {...}}} on the CPU in the model's dtype: [tokens, width] each,
    attn_weights [heads, tokens, tokens].
    """
    device = next(model.parameters()).device
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    results = [None] * len(sequences)
    for group in plan_batches([len(s) for s in sequences], batch_size):
        ids, mask, positions = left_pad([sequences[i] for i in group], pad_id, device)
        got = {l: {"attention": {}, "mlp": {}, "residual": {}} for l in layers}

        def on_tensor(layer, kind, name, x):
            got[layer][kind][name] = x.detach().cpu()

        with internals_hooks(model, layers, on_tensor):
            try:
                model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False, logits_to_keep=1)
            except _Stop:
                pass
        T = ids.shape[1]
        for b, i in enumerate(group):
            start = T - len(sequences[i])
            # clone: a saved view would carry the whole batch's storage into the file
            results[i] = {l: {kind: {name: (x[b, :, start:, start:] if name == "attn_weights" else x[b, start:]).clone()
                                     for name, x in tensors.items()}
                              for kind, tensors in got[l].items()}
                          for l in layers}
    return results


def _split(internals, n_prompt, n_total):
    """One layer's [tokens, ...] tensors -> the seed's prompt and response halves."""
    prompt, response = {}, {}
    for kind, tensors in internals.items():
        prompt[kind], response[kind] = {}, {}
        for name, x in tensors.items():
            if name == "attn_weights":  # [heads, T, T]: a matrix for the prompt, one growing row per response token
                prompt[kind][name] = x[:, :n_prompt, :n_prompt].clone()
                response[kind][name] = [x[:, t, :t + 1].clone() for t in range(n_prompt, n_total)]
            else:
                prompt[kind][name], response[kind][name] = x[:n_prompt].clone(), x[n_prompt:].clone()
    return {"prompt": prompt, "response": response}


def _segment(side):
    return {k: side[k] for k in ("text", "tokens", "token_ids", "n_tokens")}


def internals_record(response, internals, layer, dims, metadata):
    """The trait-independent file for one (prompt, layer). response: a response_record."""
    n_prompt = response["prompt"]["n_tokens"]
    return {
        "prompt": _segment(response["prompt"]),
        "response": _segment(response["response"]),
        "layer": layer,
        "internals": _split(internals, n_prompt, n_prompt + response["response"]["n_tokens"]),
        "metadata": {**metadata, **dims, "layer": layer, "traitflow_version": __version__, "capture_date": now()},
    }


def trait_record(internals, decomposition, top_neurons, metadata, internals_file):
    """The per-trait file; internals_file is stored relative to the trait file's folder."""
    layer, shape = internals["layer"], internals["metadata"]
    return {
        "trait": metadata["trait"],
        "layer": layer,
        "prompt": internals["prompt"],
        "response": internals["response"],
        "decomposition": decomposition,
        "top_neurons": top_neurons,
        "metadata": {**metadata, "layer": layer, "internals_file": internals_file, "sublayers": list(SUBLAYERS),
                     **{k: shape[k] for k in ("n_layers", "d_model", "n_heads", "d_mlp")},
                     **{k: shape[k] for k in ("seed", "temperature", "generation", "response_source") if k in shape},
                     "traitflow_version": __version__, "capture_date": now()},
    }


def load_seed_format(trait_file, internals_file=None):
    """The seed scripts' single-layer dict for a per-trait .pt, internals included.

    The internals come from the shared file the trait file names (or internals_file).
    mlp also carries 'gelu', the seed's name for the neuron activations (now the
    input of down_proj, act(gate) * up; the gate activation alone is 'gate_act').
    """
    rec = load_pt(trait_file)
    path = internals_file or os.path.normpath(os.path.join(os.path.dirname(trait_file), rec["metadata"]["internals_file"]))
    shared = load_pt(path)
    internals = shared["internals"]
    for side in internals.values():
        side["mlp"]["gelu"] = side["mlp"]["neurons"]
    return {"prompt": rec["prompt"], "response": rec["response"], "layer": rec["layer"], "internals": internals,
            "decomposition": rec["decomposition"], "top_neurons": rec["top_neurons"],
            "metadata": {**shared["metadata"], **rec["metadata"]}}

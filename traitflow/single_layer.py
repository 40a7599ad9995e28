"""Single-layer deep dive: every internal tensor of chosen layers, and each trait's decomposition there.

Two files per (prompt, layer), so the large trait-independent tensors exist once:
  experiments/{exp}/inference/layer_internal_states/prompt_{i}_layer{L}.pt           internals_record()
      Q/K/V before and after rotary, per-head attention, MLP tensors, the three residual points
  experiments/{exp}/{trait}/inference/layer_internal_states/prompt_{i}_layer{L}.pt   trait_record()
      the trait's decomposition at that layer (+ .json for the viewer)
load_seed_format(trait_file) joins the two into the seed scripts' dict for old notebooks.

The per-trait stage runs no forward pass and loads no model: load_layers() reads only the
chosen decoder layers' tensors from the checkpoint files into a skeleton built on the meta
device, and decompose() needs only that block (o_proj, down_proj, Gemma-2's output norms).

Internals names (TransformerLens hook in brackets), [tokens, width] unless noted:
  attention: q_proj, k_proj, v_proj (hook_q/k/v, flattened heads, before rotary), q_rotary, k_rotary
             (hook_rot_q/k), z (hook_z: per-head outputs entering o_proj), attn_weights (hook_pattern:
             [heads, n, n] for the prompt; response token j: [heads, n_prompt + j + 1])
  mlp:       up_proj, gate_act (act(gate_proj)), neurons (hook_post: act(gate) * up, entering down_proj),
             down_proj (its output, before Gemma-2's post_feedforward_layernorm)
  residual:  input, after_attn, output (resid_pre, resid_mid, resid_post)
"""

import json
import os
import sys
from contextlib import ExitStack, contextmanager

import torch

from . import SUBLAYERS, __version__
from .arch import architecture_for, get_module
from .batching import plan_batches
from .capture import left_pad, unit_vectors
from .errors import TraitflowError
from .formats import load_pt, now

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


# --- one layer's weights, without loading the model ---------------------------------------------

_CHECKPOINTS = (  # (index of a sharded checkpoint, single file), in from_pretrained's order of preference
    ("model.safetensors.index.json", "model.safetensors"),
    ("pytorch_model.bin.index.json", "pytorch_model.bin"),
)


def model_folder(model_path):
    """The local folder of a model: the path itself, or a hub name's snapshot in the local cache."""
    from .workflow import model_dir

    folder = model_dir({"model": model_path})
    if folder is None or not os.path.isdir(folder):
        raise TraitflowError(f"model '{model_path}'", "not a local folder and not in the local Hugging Face cache; "
                             "nothing is downloaded at run time",
                             f"fetch it once where the hub is reachable (`hf download {model_path}`) and copy the "
                             "cache (HF_HOME) here, or set model to a local folder")
    return folder


def _open_checkpoint(path):
    """{key: tensor-or-lazy handle} reader for one checkpoint file; tensors are read on access only."""
    if path.endswith(".safetensors"):
        from safetensors import safe_open
        handle = safe_open(path, framework="pt", device="cpu")
        return list(handle.keys()), handle.get_tensor
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # mmap: untouched tensors stay on disk
    return list(state), state.__getitem__


def _checkpoint_keys(folder):
    """{tensor key: file} for the model's checkpoint, from the index of a sharded one or the file's own keys."""
    for index_name, single_name in _CHECKPOINTS:
        index = os.path.join(folder, index_name)
        if os.path.exists(index):
            try:
                with open(index, encoding="utf-8") as fh:
                    weight_map = json.load(fh)["weight_map"]
            except (ValueError, KeyError, TypeError) as err:
                raise TraitflowError(index, f"not a checkpoint index ({type(err).__name__}: {err})",
                                     "re-save the model with save_pretrained") from None
            return {key: os.path.join(folder, name) for key, name in weight_map.items()}
        single = os.path.join(folder, single_name)
        if os.path.exists(single):
            keys, _ = _open_checkpoint(single)
            return dict.fromkeys(keys, single)
    raise TraitflowError(folder, "no model.safetensors, model.safetensors.index.json or pytorch_model.bin in it",
                         "point model at a folder written by save_pretrained")


def _layer_prefix(keys, layers_path, layer, where):
    """The key prefix of decoder layer `layer` (model.layers.L.), or the same without the base model's name."""
    candidates = [f"{layers_path}.{layer}."]
    if "." in layers_path:
        candidates.append(f"{layers_path.split('.', 1)[1]}.{layer}.")  # saved from the base model (AutoModel)
    for prefix in candidates:
        if any(k.startswith(prefix) for k in keys):
            return prefix
    raise TraitflowError(where, f"the checkpoint has no tensors for layer {layer} (looked for keys starting with "
                         f"{' or '.join(candidates)})", "point model at a folder written by save_pretrained")


def load_layers(model_path, layers, dtype="float32"):
    """(config, {layer: decoder block}) with only those layers' tensors read from the checkpoint.

    The model's skeleton is built on the meta device from its config (no memory, no
    weights); the chosen decoder layers take the safetensors (or .bin) tensors under
    their key prefix as parameters, read one by one on the CPU: a sharded checkpoint
    opens only the files that hold them, and nothing else is read. dtype: a traitflow dtype
    name or torch dtype (the internals' dtype makes the weights round like the pass).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    from .modeling import DTYPES

    dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    folder = model_folder(model_path)
    try:
        config = AutoConfig.from_pretrained(folder)
    except (OSError, ValueError) as err:
        raise TraitflowError(folder, f"cannot read the model's config ({type(err).__name__}: "
                             f"{(str(err).strip().splitlines() or [''])[0][:200]})",
                             "point model at a folder written by save_pretrained") from None
    arch = architecture_for(config, where=f"model '{model_path}'")
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    decoder = get_module(skeleton, arch.layers)
    bad = [l for l in layers if not 0 <= l < len(decoder)]
    if bad:
        raise TraitflowError(f"model '{model_path}'", f"layers {bad} do not exist (it has layers 0-{len(decoder) - 1})",
                             "pick from those")
    files = _checkpoint_keys(folder)
    blocks, wanted = {}, {}
    for layer in layers:
        prefix = _layer_prefix(files, arch.layers, layer, folder)
        block = decoder[layer].to(dtype)  # still on meta: nothing allocated
        names = set(block.state_dict())
        for key in files:
            if key.startswith(prefix) and key[len(prefix):] in names:  # skips stale extras (old rotary inv_freq)
                wanted.setdefault(files[key], []).append((layer, key, key[len(prefix):]))
        blocks[layer] = (block, {})
    for path, entries in wanted.items():  # each file that holds some of them, opened once
        _, read = _open_checkpoint(path)
        for layer, key, name in entries:
            blocks[layer][1][name] = read(key).to(dtype)
    out = {}
    for layer, (block, state) in blocks.items():
        missing = sorted(set(block.state_dict()) - set(state))
        if missing:
            raise TraitflowError(folder, f"the checkpoint lacks {len(missing)} tensor(s) of layer {layer} "
                                 f"(e.g. {missing[0]})", "point model at a complete save_pretrained folder")
        block.load_state_dict(state, strict=True, assign=True)  # the tensors read become the parameters
        meta = [n for n, t in [*block.named_parameters(), *block.named_buffers()] if t.is_meta]
        if meta:  # a buffer the checkpoint does not hold (none in the supported families)
            raise TraitflowError(folder, f"layer {layer} has tensors that are not saved in checkpoints ({meta[0]})",
                                 "decompose with the loaded model (layer_block) for this architecture")
        out[layer] = block.eval()
    del skeleton
    return config, out


def load_layer(model_path, layer, dtype="float32"):
    """(config, decoder block `layer`) read from the checkpoint without loading the model."""
    config, blocks = load_layers(model_path, [layer], dtype)
    return config, blocks[layer]


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

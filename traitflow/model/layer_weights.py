"""Chosen decoder layers' weights, read from the checkpoint without loading the model.

The model's skeleton is built on the meta device from its config; only the chosen layers'
tensors are read from the safetensors (or .bin) files, sharded or not. The per-trait
single-layer stage uses it so that it runs without the model in memory.
"""

import json
import os

import torch

from .arch import architecture_for, get_module
from ..core.errors import TraitflowError
from ..core.settings import ModelSettings
from .model_facts import model_dir


_CHECKPOINTS = (  # (index of a sharded checkpoint, single file), in from_pretrained's order of preference
    ("model.safetensors.index.json", "model.safetensors"),
    ("pytorch_model.bin.index.json", "pytorch_model.bin"),
)


def model_folder(model_path):
    """The local folder of a model: the path itself, or a hub name's snapshot in the local cache."""
    folder = model_dir(ModelSettings(name=model_path))
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

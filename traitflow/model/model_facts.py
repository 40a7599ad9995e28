"""Model facts read at plan time, without importing torch or transformers: where a model's files are
(a local folder, the demo model built per spec, a GGUF file converted here (traitflow.model.gguf), or the
local Hugging Face cache) and its config.json.

Below the plan (traitflow.plan.workflow) and the capture code (traitflow.model.capture), which both ask it.
"""

import glob
import json
import os
import struct
from types import SimpleNamespace

from .arch import architecture_for
from .gguf import OUTPUTS as GGUF_OUTPUTS, gguf_model, is_gguf
from ..core.errors import TraitflowError

DEMO_MODEL = "traitflow-demo"  # the random model, built per demo_model spec (traitflow.demo.spec.demo_model_dir)


def model_path(model):
    """What from_pretrained loads for model (traitflow.core.settings.ModelSettings)."""
    from ..demo.spec import demo_model_dir

    if is_gguf(model.name):
        return gguf_model(model).folder  # converted by the workflow (rule convert_gguf)
    return demo_model_dir(model.demo_spec) if model.name == DEMO_MODEL else model.name


def planned_chat_template(model):
    """Whether a model the workflow builds will have a chat template (None: not built here; ask its folder)."""
    if model.name == DEMO_MODEL:
        return True
    return gguf_model(model).facts["chat_template"] if is_gguf(model.name) else None


def _hub_dir():
    return os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")


def _hub_config(name):
    hits = sorted(glob.glob(os.path.join(_hub_dir(), "models--" + name.replace("/", "--"), "snapshots", "*",
                                         "config.json")), key=os.path.getmtime)
    return hits[-1] if hits else None


def _looks_like_path(name):
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def model_dir(model):
    """The folder holding the model's files, or None when there is none (yet)."""
    name = model.name
    if name == DEMO_MODEL:
        return model_path(model) if os.path.isdir(model_path(model)) else None
    if is_gguf(name):
        return gguf_model(model).folder if gguf_model(model).converted else None
    if os.path.isdir(name):
        return name
    hit = _hub_config(name)
    return os.path.dirname(hit) if hit else None


def model_config(model):
    """The model's config.json as a dict, read without importing transformers."""
    from ..demo.spec import DEFAULT_SPEC, check_spec

    name = model.name
    if name == DEMO_MODEL:
        check_spec(model.demo_spec)
        return {"model_type": "gemma2", **DEFAULT_SPEC, **(model.demo_spec or {})}
    where = f"config model '{name}'"
    if is_gguf(name):  # from the file's header: the same facts before and after the conversion
        gguf = gguf_model(model)
        architecture_for(SimpleNamespace(model_type=gguf.facts["model_type"]), where=f"{where} ({gguf.path})")
        return gguf.config()
    if os.path.isdir(name):
        from ..demo.files import check_build_record

        check_build_record(name, thorough=False)  # a folder built here (models/traitflow-demo-chat): complete?
        path = os.path.join(name, "config.json")
        if not os.path.exists(path):
            raise TraitflowError(where, "the folder has no config.json",
                                 "point model at a folder written by save_pretrained (config.json, weights, tokenizer)")
    elif _looks_like_path(name):
        raise TraitflowError(where, "folder not found",
                             "fix the path, or give a Hugging Face name from the local cache")
    else:
        path = _hub_config(name)
        if path is None:
            raise TraitflowError(
                where, f"not a local folder and not in the local Hugging Face cache ({_hub_dir()}); "
                "nothing is downloaded at run time",
                f"fetch it once where the hub is reachable (`hf download {name}`) and copy the cache "
                "(HF_HOME) here, or set model to a local folder")
    try:
        with open(path, encoding="utf-8") as fh:
            cfg = json.load(fh)
    except ValueError as err:
        raise TraitflowError(path, f"not valid JSON ({err})", "re-download or re-save the model") from None
    cfg = cfg.get("text_config", cfg)
    architecture_for(SimpleNamespace(model_type=cfg.get("model_type")), where=f"{where} ({path})")
    for key in ("num_hidden_layers", "hidden_size"):
        if not isinstance(cfg.get(key), int):
            raise TraitflowError(path, f"no integer '{key}'", "use a decoder-only causal LM config")
    check_folder(os.path.dirname(path), cfg)
    return cfg


# A tokenizer's own files: without one of them, AutoTokenizer makes up a tokenizer of a few special
# tokens (every prompt becomes <unk>, every response empty) instead of failing.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "vocab.json",
                   "vocab.txt", "tiktoken.model")


def check_folder(folder, cfg):
    """A model folder is complete or refused: its tokenizer is there, and config.json's hidden_size is the
    width of the weights' token embedding (read from the safetensors header, without torch)."""
    if not any(os.path.exists(os.path.join(folder, f)) for f in TOKENIZER_FILES):
        raise TraitflowError(folder, f"no tokenizer files (none of {', '.join(TOKENIZER_FILES[:3])}, ...)",
                             "save the model's tokenizer into the folder too (tokenizer.save_pretrained(folder))")
    name, shape = embedding_shape(folder)
    if shape and shape[-1] != cfg["hidden_size"]:
        raise TraitflowError(os.path.join(folder, "config.json"), f"hidden_size is {cfg['hidden_size']}, but the "
                             f"weights' {name} is {shape[-1]} wide (shape {shape})",
                             "use the config.json saved with these weights")


def embedding_shape(folder):
    """(tensor name, shape) of the token embedding in the folder's safetensors weights; (None, None) when
    there are none (weights in .bin files, or not written yet)."""
    index = os.path.join(folder, "model.safetensors.index.json")
    try:
        if os.path.exists(index):
            with open(index, encoding="utf-8") as fh:
                files = json.load(fh)["weight_map"]
        else:
            files = {n: "model.safetensors" for n in _header(os.path.join(folder, "model.safetensors"))}
        name = next((n for n in sorted(files) if n.endswith("embed_tokens.weight")), None)
        return (name, _header(os.path.join(folder, files[name]))[name]["shape"]) if name else (None, None)
    except (OSError, ValueError, KeyError, TypeError, struct.error):  # absent or unreadable: the job's load says so
        return None, None


def _header(path):
    """The JSON header of a safetensors file: {tensor name: {"dtype", "shape", "data_offsets"}}."""
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        return json.loads(fh.read(size))


def _model_files(model):
    if model.name == DEMO_MODEL:
        return [os.path.join(model_path(model), "config.json")]
    if is_gguf(model.name):
        return [os.path.join(model_path(model), name) for name in GGUF_OUTPUTS]
    if os.path.isdir(model.name):
        return [os.path.join(model.name, "config.json")]
    return []

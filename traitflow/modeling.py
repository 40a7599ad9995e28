"""Loading a causal LM and its tokenizer the same way for every rule.

Everything, the embedded demo model included, goes through from_pretrained from
a local directory or the local Hugging Face cache: nothing downloads at run time.
"""

import os

import torch

from .arch import architecture_for
from .errors import TraitflowError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name="auto"):
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TraitflowError("config capture.device", f"'{name}' requested but CUDA is not available",
                             "set capture.device to auto or cpu")
    return name


def resolve_dtype(name="auto", device="cpu"):
    if name == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    return DTYPES[name]


def _source(model_name):
    """Local directory, or a hub name that must already be in the local cache."""
    if os.path.isdir(model_name):
        return model_name, {}
    return model_name, {"local_files_only": True}


def _not_cached(model_name, err):
    detail = (str(err).strip().splitlines() or [""])[0][:200]
    if os.path.isdir(model_name):
        fix = "complete the folder: save_pretrained of both the model and its tokenizer"
    else:
        fix = (f"fetch it once where the hub is reachable (`hf download {model_name}`) and copy the cache (HF_HOME) "
               "here, or set model to a local folder")
    return TraitflowError(f"model '{model_name}'", "cannot be loaded from local files, and nothing is downloaded "
                          f"at run time ({type(err).__name__}: {detail})", fix)


def load_tokenizer(model_name):
    from transformers import AutoTokenizer

    src, kw = _source(model_name)
    try:
        tok = AutoTokenizer.from_pretrained(src, **kw)
    except (OSError, ValueError) as err:  # ValueError: a folder with no tokenizer files in it
        raise _not_cached(model_name, err) from None
    # Left padding keeps every prompt's last token at the same column, which is
    # what batched decoding needs; positions are recomputed from the mask.
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(model_name, device="auto", dtype="auto", eager=True):
    """Load a causal LM in eval mode. eager=True is needed wherever attention weights are read."""
    from transformers import AutoModelForCausalLM

    device = resolve_device(device)
    src, kw = _source(model_name)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            src, dtype=resolve_dtype(dtype, device),
            attn_implementation="eager" if eager else None, **kw)
    except OSError as err:
        raise _not_cached(model_name, err) from None
    architecture_for(model.config, where=f"model '{model_name}'")
    return model.to(device).eval()


def n_layers(model):
    return model.config.num_hidden_layers

"""File formats: shared responses, all-layers captures, atomic writers and safe loaders.

The all-layers .pt keeps the seed scripts' layout (so old notebooks keep
working) with DESIGN.md section 3's corrections; the .json mirrors it.
"""

import json
import os
import tempfile
from datetime import datetime, timezone

import torch

from . import SUBLAYERS, __version__
from .errors import TraitflowError


def atomic_write(path, write):
    """Write through write(tmp_path) then rename, so a crash never leaves a half file."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_pt(obj, path):
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_json(obj, path, indent=None):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=indent, ensure_ascii=True)
    atomic_write(path, write)


def load_pt(path):
    """Load a .pt without executing pickled code (a .pt from elsewhere is a pickle)."""
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise TraitflowError(path, "file not found") from None
    except Exception as err:  # torch raises UnpicklingError and others for unsafe or broken files
        raise TraitflowError(path, f"refused to load: not a plain tensor file ({type(err).__name__})",
                             "re-save it with torch.save of tensors, dicts and lists only, or use .safetensors") from None


def load_json(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def token_strings(tokenizer, ids):
    """Each token decoded on its own: readable text for files and the viewer."""
    return [tokenizer.decode([i]) for i in ids]


def response_record(index, prompt_text, prompt_ids, response_ids, tokenizer, settings, model):
    return {
        "prompt_index": index,
        "prompt": {"text": prompt_text, "token_ids": list(prompt_ids),
                   "tokens": token_strings(tokenizer, prompt_ids), "n_tokens": len(prompt_ids)},
        "response": {"text": tokenizer.decode(response_ids, skip_special_tokens=True),
                     "token_ids": list(response_ids),
                     "tokens": token_strings(tokenizer, response_ids), "n_tokens": len(response_ids)},
        "settings": dict(settings),
        "seed": settings["seed"],
        "model": model,
        "traitflow_version": __version__,
        "created": now(),
    }


def _segment(side):
    return {k: side[k] for k in ("text", "tokens", "token_ids", "n_tokens")}


def all_layers_record(response, projections, attention, metadata):
    """Build the seed-format dict for one (trait, prompt).

    response: a response_record. projections: [tokens, layers, 3] float32 over
    prompt + response. attention: [layers, tokens, tokens] head-mean.
    Response token j's row is the position where token j is the input; its
    attention row has n_prompt + j + 1 entries.
    """
    n_prompt = response["prompt"]["n_tokens"]
    n_layer = projections.shape[1]
    n_total = projections.shape[0]
    return {
        "prompt": _segment(response["prompt"]),
        "response": _segment(response["response"]),
        "projections": {"prompt": projections[:n_prompt].contiguous(),
                        "response": projections[n_prompt:].contiguous()},
        "attention_weights": {
            "prompt": {f"layer_{l}": attention[l, :n_prompt, :n_prompt].contiguous() for l in range(n_layer)},
            "response": [{f"layer_{l}": attention[l, t, :t + 1].contiguous() for l in range(n_layer)}
                         for t in range(n_prompt, n_total)],
        },
        "metadata": {**metadata, "n_layers": n_layer, "sublayers": list(SUBLAYERS),
                     "traitflow_version": __version__, "capture_date": now()},
    }


def _rounded(t, digits):
    return torch.round(t.float(), decimals=digits).tolist()


def to_json(record):
    """JSON mirror of a capture record: tensors become rounded lists of floats."""
    def convert(x):
        if isinstance(x, torch.Tensor):
            # Projections ([tokens, layers, 3]) keep 4 decimals; attention weights
            # (rows and matrices, all in [0, 1]) keep 5.
            return _rounded(x, 4 if x.dim() == 3 else 5)
        if isinstance(x, dict):
            return {k: convert(v) for k, v in x.items()}
        if isinstance(x, list):
            return [convert(v) for v in x]
        return x
    return convert(record)

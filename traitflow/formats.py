"""File formats: shared responses, all-layers captures, atomic writers and safe loaders.

The all-layers .pt keeps the seed scripts' layout (so old notebooks keep
working) with DESIGN.md section 3's corrections; the .json mirrors it.
torch is imported where a function needs it, so that the Snakefile (the run
summary) and torch-free scripts can use the writers at no start-up cost.
"""

import json
import os
import tempfile
from datetime import datetime, timezone

from . import SUBLAYERS, __version__
from .errors import TraitflowError


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write(path, write):
    """Write through write(tmp_path) then rename, so a crash never leaves a half file.

    The temporary name is hidden (.NAME.XXXX.tmp: no rule's output, no glob's
    `*`); one left by a SIGKILL is removed by remove_stale_temps when the job
    that owns NAME runs again.
    """
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    try:
        # mkstemp creates 0600; give the file the mode open() would (shared clusters read results).
        os.chmod(tmp, 0o666 & ~_UMASK)
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_stale_temps(paths):
    """Delete the temporaries atomic_write left for these outputs when a job was killed.

    Called before a job writes (Snakemake's lock means no other writer of them is
    running); one directory listing per folder, however many outputs it holds.
    """
    by_dir = {}
    for path in paths:
        by_dir.setdefault(os.path.dirname(path) or ".", set()).add(os.path.basename(path))
    for directory, names in by_dir.items():
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                target = entry.name[1:-len(".tmp")].rpartition(".")[0]  # .NAME.XXXX.tmp -> NAME
                if target in names:
                    os.unlink(entry.path)


def save_pt(obj, path):
    import torch

    atomic_write(path, lambda tmp: torch.save(obj, tmp))


# Prompts and tokens can hold HTML. Escaped like this, a JSON file stays inert even
# when a page inlines it in a <script> block; JSON.parse and json.load read it back unchanged.
_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def json_text(obj, indent=None):
    """JSON with every non-ASCII character and every <, > and & written as a \\u escape.

    Those three characters can only occur inside JSON strings, so replacing them
    in the text never touches the structure.
    """
    text = json.dumps(obj, indent=indent, ensure_ascii=True)
    for char, escape in _HTML_ESCAPES.items():
        text = text.replace(char, escape)
    return text


def save_json(obj, path, indent=None):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json_text(obj, indent))
    atomic_write(path, write)


def load_pt(path):
    """Load a .pt without executing pickled code (a .pt from elsewhere is a pickle)."""
    import torch

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
    attention row has n_prompt + j + 1 entries. Every tensor is cloned: a slice
    would drag the whole batch's storage into each saved file.
    """
    n_prompt = response["prompt"]["n_tokens"]
    n_layer = projections.shape[1]
    n_total = projections.shape[0]
    return {
        "prompt": _segment(response["prompt"]),
        "response": _segment(response["response"]),
        "projections": {"prompt": projections[:n_prompt].clone(),
                        "response": projections[n_prompt:].clone()},
        "attention_weights": {
            "prompt": {f"layer_{l}": attention[l, :n_prompt, :n_prompt].clone() for l in range(n_layer)},
            "response": [{f"layer_{l}": attention[l, t, :t + 1].clone() for l in range(n_layer)}
                         for t in range(n_prompt, n_total)],
        },
        "metadata": {**metadata, "n_layers": n_layer, "sublayers": list(SUBLAYERS),
                     "traitflow_version": __version__, "capture_date": now()},
    }


def _rounded(t, digits):
    import torch

    return torch.round(t.float(), decimals=digits).tolist()


def to_json(record):
    """JSON mirror of a capture record: tensors become rounded lists of floats."""
    import torch

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

"""File formats: response records, all-layers captures (.pt and .json) and their loaders.

The all-layers .pt keeps the seed scripts' layout (so old notebooks keep
working) with the corrections docs/formats.md lists; the .json mirrors it.
The atomic writers and safe loaders live in traitflow.core.fileio (re-exported here).
torch and numpy are imported where a function needs them, so that the Snakefile
(the run summary) and torch-free scripts can use the writers at no start-up cost.
"""

import os

from .constants import SUBLAYERS, __version__
from .fileio import (atomic_write, json_text, load_json, load_pt, now,  # noqa: F401 (callers import them from here)
                     remove_stale_temps, save_json, save_pt)


def token_strings(tokenizer, ids):
    """Each token decoded on its own: readable text for files and the viewer."""
    return [tokenizer.decode([i]) for i in ids]


def response_record(index, prompt_text, prompt_ids, response_ids, tokenizer, settings, model, prompt_set="default"):
    return {
        "prompt_index": index,
        "prompt_set": prompt_set,
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


def all_layers_record(response, projections, metadata, method_scores=None):
    """The per-trait all-layers record for one (trait, prompt).

    response: a response_record. projections: [tokens, layers, 3] float32 over
    prompt + response. method_scores: {method: [tokens]} scores of other vectors
    at the dynamics layer and point (read by the dynamics stage, which loads no
    model). metadata must name the shared file (shared_file, relative to the
    record's folder), which holds the trait-independent data. Every tensor is
    cloned: a slice would drag the whole batch's storage into each saved file.
    """
    n_prompt = response["prompt"]["n_tokens"]
    record = {
        "prompt": _segment(response["prompt"]),
        "response": _segment(response["response"]),
        "projections": {"prompt": projections[:n_prompt].clone(), "response": projections[n_prompt:].clone()},
        "metadata": {**metadata, "n_layers": projections.shape[1], "sublayers": list(SUBLAYERS),
                     "traitflow_version": __version__, "capture_date": now()},
    }
    if method_scores:
        record["method_scores"] = {m: s.clone() for m, s in method_scores.items()}
    return record


def round_significant(values, digits=4):
    """values rounded to `digits` significant digits, as float64 (whose repr is then short).

    Rounding in float32 and converting with .tolist() writes 0.03742999956011772;
    rounding in float64 writes 0.03743.
    """
    import numpy as np

    a = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.floor(np.log10(np.abs(a)))
    mag = np.where(np.isfinite(mag), mag, 0).astype(np.int64)
    shift = digits - 1 - mag
    # Multiply by an exact power of ten where shift >= 0, divide by one where it is not.
    up = 10.0 ** np.clip(shift, 0, None)
    down = 10.0 ** np.clip(-shift, 0, None)
    return np.where(shift >= 0, np.round(a * up) / up, np.round(a / down) * down)


def _rounded_list(t, digits=4):
    import numpy as np

    return round_significant(np.asarray(t.detach().float().cpu() if hasattr(t, "detach") else t), digits).tolist()


def to_json(record, digits=4):
    """JSON mirror of a record: tensors become lists of floats at `digits` significant digits."""
    import torch

    def convert(x):
        if isinstance(x, torch.Tensor):
            return _rounded_list(x, digits) if x.is_floating_point() else x.tolist()
        if isinstance(x, dict):
            return {k: convert(v) for k, v in x.items()}
        if isinstance(x, list):
            return [convert(v) for v in x]
        return x
    return convert(record)


def all_layers_json(record):
    """The per-trait .json: projections and metadata only (tokens and attention live in the shared data)."""
    meta = {**record["metadata"], "n_prompt": record["prompt"]["n_tokens"], "n_response": record["response"]["n_tokens"]}
    return {"trait": meta.get("trait"), "metadata": meta, "projections": to_json(record["projections"])}


def shared_file_of(path, record):
    """The shared per-prompt file a per-trait file names (stored relative to the file's folder)."""
    return os.path.normpath(os.path.join(os.path.dirname(path), record["metadata"]["shared_file"]))


def load_capture(path):
    """A per-trait all-layers .pt with its shared data, as numpy arrays over prompt + response tokens.

    Returns a dict: projections, norms and cosine (projection / ||h||) [T, L, 3]
    float32; n_prompt; tokens and token_ids; prompt_index; trait; metadata;
    shared_file. Cosine is 0 where the residual norm is 0.
    """
    import numpy as np

    from .shared import read_shared

    rec = load_pt(path)
    shared_path = shared_file_of(path, rec)
    shared = read_shared(shared_path)
    proj = np.concatenate([rec["projections"]["prompt"].numpy(), rec["projections"]["response"].numpy()])
    norms = np.asarray(shared.residual_norms, dtype=np.float32)
    cosine = np.divide(proj, norms, out=np.zeros_like(proj), where=norms > 0)
    meta = rec["metadata"]
    return {"projections": proj, "norms": norms, "cosine": cosine, "n_prompt": rec["prompt"]["n_tokens"],
            "tokens": rec["prompt"]["tokens"] + rec["response"]["tokens"],
            "token_ids": rec["prompt"]["token_ids"] + rec["response"]["token_ids"],
            "prompt_index": meta.get("prompt_index"), "trait": meta.get("trait"), "metadata": meta,
            "shared_file": shared_path, "method_scores": rec.get("method_scores", {})}


def load_seed_format(path):
    """The seed scripts' full all-layers dict for a per-trait .pt: its record plus the shared attention.

    attention_weights.prompt.layer_{l}: [n_prompt, n_prompt]; attention_weights.response[j].layer_{l}:
    [n_prompt + j + 1] (float32, head-mean, within 7.6e-6 of the captured weights).
    """
    import torch

    from .shared import read_shared

    rec = load_pt(path)
    shared = read_shared(shared_file_of(path, rec))
    n_prompt, n_total, L = rec["prompt"]["n_tokens"], shared.n_tokens, shared.n_layers
    rows = [torch.from_numpy(shared.attention_rows(t)) for t in range(n_total)]  # [L, t + 1] each
    prompt = {f"layer_{l}": torch.zeros(n_prompt, n_prompt) for l in range(L)}
    for t in range(n_prompt):
        for l in range(L):
            prompt[f"layer_{l}"][t, :t + 1] = rows[t][l]
    response = [{f"layer_{l}": rows[t][l].clone() for l in range(L)} for t in range(n_prompt, n_total)]
    out = {k: v for k, v in rec.items() if k != "method_scores"}
    out["attention_weights"] = {"prompt": prompt, "response": response}
    return out

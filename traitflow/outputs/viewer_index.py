"""The viewer's table of contents for one experiment: traits, prompts, and which files exist.

The browser cannot list folders, so a small index says which files to fetch. Paths
in it are relative to the experiment folder; the viewer resolves them against
`experiments/{exp}/`. Per prompt: its response (tokens) and its shared per-prompt
file (residual norms, attention, logit lens; read by byte range); per trait and
prompt: the projections JSON, dynamics and single-layer JSON; once: the overview.
Only the standard library is used: this runs in a local job.
"""

import glob
import os
import re

from ..core.constants import SUBLAYERS, __version__

INDEX_FORMAT = "traitflow-viewer-index/2"

DEFAULT_SET = "default"
# Experiment-relative paths of the files the viewer reads (docs/formats.md): a trait is TRAIT or
# CATEGORY/TRAIT, and a named prompt set's files sit in a folder of the set's name.
_TRAIT = r"(?P<trait>[^/]+(?:/[^/]+)?)"
_PROMPT = r"(?:(?P<set>[^/]+)/)?prompt_(?P<prompt>\d+)"
_PATTERNS = {
    "response": re.compile(rf"^inference/responses/{_PROMPT}\.json$"),
    "shared": re.compile(rf"^inference/shared/{_PROMPT}\.safetensors$"),
    "overview": re.compile(r"^viewer/overview\.json$"),
    "all_layers": re.compile(rf"^{_TRAIT}/inference/residual_stream_activations/{_PROMPT}\.json$"),
    "single_layer": re.compile(rf"^{_TRAIT}/inference/layer_internal_states/{_PROMPT}_layer(?P<layer>\d+)\.json$"),
    "dynamics": re.compile(rf"^{_TRAIT}/inference/dynamics/{_PROMPT}\.json$"),
}


def classify(relpath):
    """(kind, trait, (prompt set, index in the set), layer) for a viewer file, or None for anything else."""
    relpath = relpath.replace(os.sep, "/")
    for kind, pattern in _PATTERNS.items():
        m = pattern.match(relpath)
        if m:
            d = m.groupdict()
            layer = int(d["layer"]) if d.get("layer") else None
            prompt = (d.get("set") or DEFAULT_SET, int(d["prompt"])) if d.get("prompt") else None
            return kind, d.get("trait"), prompt, layer
    return None


def scan(exp_dir):
    """Every file under exp_dir the viewer could read (for indexing outside Snakemake)."""
    paths = [*glob.glob(os.path.join(exp_dir, "**", "prompt_*.json"), recursive=True),
             *glob.glob(os.path.join(exp_dir, "inference", "shared", "prompt_*.safetensors")),
             *glob.glob(os.path.join(exp_dir, "viewer", "overview.json"))]
    return sorted(p for p in paths if classify(os.path.relpath(p, exp_dir)))


def _read_json(path):
    from ..core.formats import load_json  # a damaged file: one line naming it and the command that rebuilds it

    return load_json(path)


def build_index(exp_dir, files, experiment, model, n_layers, traits, prompt_refs=None, left_out=None, variants=False):
    """The index dict for the files listed (paths as given to Snakemake, i.e. under exp_dir).

    traits: {name: {"method": str, "vector_layer": int}} in display order. Prompts
    come from the shared response files among `files` (with their shared per-prompt
    file, when listed); a trait's entry for a prompt names its all-layers JSON,
    single-layer JSON per layer, and dynamics JSON, each only when that file is among
    `files`. "overview" names the overview file when it is listed, else it is null.
    prompt_refs: [(prompt set, index in the set)] in the plan's order; a prompt's
    "index" in the viewer is its position there (unique across sets), with its set and
    "set_index" beside it (default: the default set, then the others by name).
    left_out: {trait: why} for traits the plan left out (shown by the viewer).
    variants: whether the experiment compares model variants (variants/viewer.json exists then).
    """
    prompts, shared, entries, overview = {}, {}, {name: {} for name in traits}, None
    for path in files:
        relpath = os.path.relpath(path, exp_dir).replace(os.sep, "/")
        found = classify(relpath)
        if found is None:
            continue
        kind, trait, prompt, layer = found
        if kind == "response":
            prompts[prompt] = _prompt_entry(prompt, relpath, _read_json(path))
            continue
        if kind == "shared":
            shared[prompt] = relpath
            continue
        if kind == "overview":
            overview = relpath
            continue
        entry = entries.setdefault(trait, {}).setdefault(prompt, {})
        if kind == "single_layer":
            entry.setdefault("single_layer", {})[str(layer)] = relpath
        else:
            entry[kind] = relpath
    refs = [tuple(r) for r in prompt_refs] if prompt_refs is not None else sorted(
        prompts, key=lambda ref: (ref[0] != DEFAULT_SET, ref))
    ids = {ref: g for g, ref in enumerate(refs)}
    renumber = lambda per: {str(ids[ref]): v for ref, v in sorted(per.items(), key=lambda kv: ids[kv[0]])}  # noqa: E731
    for entry in (e for per_trait in entries.values() for e in per_trait.values()):
        if "single_layer" in entry:
            entry["single_layer"] = dict(sorted(entry["single_layer"].items(), key=lambda kv: int(kv[0])))
    for ref, entry in prompts.items():
        entry.update(index=ids[ref], prompt_set=ref[0], set_index=ref[1], shared=shared.get(ref))
    return {
        "format": INDEX_FORMAT,
        "experiment": experiment,
        "model": model,
        "n_layers": n_layers,
        "sublayers": list(SUBLAYERS),
        "traitflow_version": __version__,
        "overview": overview,
        "traits": [{"name": name, "category": name.split("/")[0] if "/" in name else None, **traits.get(name, {})}
                   for name in entries],
        "left_out": dict(left_out or {}),
        "variants": bool(variants),
        "prompt_sets": list(dict.fromkeys(ref[0] for ref in refs if ref in prompts)),
        "prompts": [prompts[ref] for ref in refs if ref in prompts],
        "files": {name: renumber(per) for name, per in entries.items()},
    }


def _prompt_entry(index, relpath, response):
    return {
        "index": index,
        "text": response["prompt"]["text"],
        "n_prompt": response["prompt"]["n_tokens"],
        "n_response": response["response"]["n_tokens"],
        "response_text": response["response"]["text"],
        "response": relpath,
    }

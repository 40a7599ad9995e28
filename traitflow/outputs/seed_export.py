"""Export captures to the original project's nested tree, attention included (scripts/export_seed_format.py).

Our per-trait files sit where the original's scripts put theirs
({exp}/{category?}/{trait}/inference/residual_stream_activations/{set?}/prompt_{i}.pt, and
layer_internal_states/.../prompt_{i}_layer{L}.pt), but keep trait-independent data (attention,
internals) once per prompt. The export writes, at the same relative path under an output
folder, the full dict the original wrote (traitflow.load_seed_format) and its .json mirror.
prompt_{i} and metadata.prompt_index are the prompt's index within its set; metadata.prompt_set
names the set.
"""

import glob
import os
import re

from ..core.errors import TraitflowError

def load_seed_format(path):
    """The seed scripts' full dict for a per-trait all-layers or single-layer .pt (attention included).

    Our files keep trait-independent data once per prompt (docs/formats.md); this
    joins a per-trait file with its shared data so seed notebooks work unchanged.
    """
    if re.search(r"_layer\d+\.pt$", str(path)):
        from ..model.single_layer import load_seed_format as single_layer
        return single_layer(path)
    from ..core.formats import load_seed_format as all_layers
    return all_layers(path)


KINDS = ("residual_stream_activations", "layer_internal_states")
# {trait or category/trait}/inference/{kind}/{set/}prompt_{i}[_layer{L}].pt, relative to the experiment folder
_FILE = re.compile(r"^(?P<trait>[^/]+(?:/[^/]+)?)/inference/(?P<kind>" + "|".join(KINDS) + r")/"
                   r"(?:(?P<set>[^/]+)/)?prompt_(?P<index>\d+)(?:_layer(?P<layer>\d+))?\.pt$")


def parse(path, exp_dir):
    """(trait, kind, set or None, index, layer or None) of a per-trait capture file, or None for any other file."""
    rel = os.path.relpath(path, exp_dir).replace(os.sep, "/")
    m = _FILE.match(rel)
    if not m or "inference" in m["trait"].split("/"):
        return None
    return m["trait"], m["kind"], m["set"], int(m["index"]), int(m["layer"]) if m["layer"] else None


def experiment_files(exp_dir, traits=None, sets=None, prompts=None, single_layer=True):
    """The per-trait capture files of an experiment, optionally only some traits, sets and prompt indices."""
    if not os.path.isdir(exp_dir):
        raise TraitflowError(exp_dir, "experiment folder not found", "name an experiment under experiments/")
    found = []
    for pattern in ("*/inference/*/prompt_*.pt", "*/inference/*/*/prompt_*.pt", "*/*/inference/*/prompt_*.pt",
                    "*/*/inference/*/*/prompt_*.pt"):
        for path in glob.glob(os.path.join(exp_dir, pattern)):
            parts = parse(path, exp_dir)
            if parts is None or (parts[1] == "layer_internal_states" and not single_layer):
                continue
            trait, _, set_name, index, _ = parts
            if traits and trait not in traits and trait.split("/")[-1] not in traits:
                continue
            if sets and (set_name or "default") not in sets:
                continue
            if prompts is not None and index not in prompts:
                continue
            found.append(path)
    if not found:
        what = ", ".join(f"{k} {v}" for k, v in (("traits", traits), ("sets", sets), ("prompts", prompts)) if v)
        raise TraitflowError(exp_dir, "no captured files" + (f" for {what}" if what else ""),
                             "run the workflow first (snakemake), or check the names chosen")
    return sorted(found)


def export_file(path, exp_dir, out_dir, write_json=True):
    """Write one file's full original dict under out_dir/{exp}/... ; returns the paths written."""
    from ..core.formats import save_json, save_pt, to_json

    parts = parse(path, exp_dir)
    if parts is None:
        raise TraitflowError(path, "not a per-trait capture file ({trait}/inference/residual_stream_activations/"
                             "[{set}/]prompt_{i}.pt or layer_internal_states/[{set}/]prompt_{i}_layer{L}.pt)",
                             "give files from an experiment folder, or use --experiment")
    _, _, set_name, index, _ = parts
    record = load_seed_format(path)
    record["metadata"] = {**record["metadata"], "prompt_index": index, "prompt_set": set_name or "default"}
    record["metadata"].pop("shared_file", None)  # the export carries the shared data itself
    target = os.path.join(out_dir, os.path.basename(os.path.normpath(exp_dir)), os.path.relpath(path, exp_dir))
    save_pt(record, target)
    written = [target]
    if write_json:
        save_json(to_json(record), target[: -len(".pt")] + ".json")
        written.append(target[: -len(".pt")] + ".json")
    return written


def experiment_of(path):
    """experiments/{exp} of a file below it (files given one by one)."""
    parts = os.path.normpath(path).split(os.sep)
    if "experiments" in parts[:-1]:
        at = len(parts) - 1 - parts[::-1].index("experiments")
        if at + 1 < len(parts) - 1:
            return os.sep.join(parts[: at + 2]) or os.sep
    raise TraitflowError(path, "not inside an experiments/{exp}/ folder", "give files under experiments/, or use "
                         "--experiment")

"""Trait vectors on disk: naming, discovery, method auto-detection and safe loading.

A trait's vectors live in experiments/{exp}/{trait}/extraction/vectors/ as
{method}_layer{L}.pt (or .safetensors), each a 1-D float tensor, with an
optional {method}_layer{L}_metadata.json beside it. Extraction at a position other than the
default (vector.position, traitflow.experiment.examples) writes into a sub-folder named as the
original project's {position} (vectors/prompt_-1/...); its metadata records the position and how
the examples were presented.
"""

import hashlib
import json
import os
import re

from ..core.errors import TraitflowError

# Auto-detection order, as in the original scripts.
METHODS = ("probe", "mean_diff", "ica", "gradient")
EXTRACTED_METHODS = ("mean_diff", "probe")  # what our extraction rule computes
_NAME = re.compile(r"^(?P<method>[A-Za-z0-9_]+?)_layer(?P<layer>\d+)\.(?P<ext>pt|safetensors)$")


def vector_filename(method, layer, ext="pt"):
    return f"{method}_layer{layer}.{ext}"


def metadata_path(vector_path):
    return re.sub(r"\.(pt|safetensors)$", "_metadata.json", vector_path)


def list_vectors(directory):
    """{(method, layer): path} for every vector file in a directory; one name as .pt and .safetensors is an error."""
    found = {}
    if os.path.isdir(directory):
        for name in sorted(os.listdir(directory)):
            m = _NAME.match(name)
            if m:
                key = (m["method"], int(m["layer"]))
                if key in found:
                    raise two_files_error(found[key], os.path.join(directory, name), *key)
                found[key] = os.path.join(directory, name)
    return found


def two_files_error(first, second, method, layer):
    """Two files for one (method, layer): projecting on either would be a guess (they may even disagree in sign)."""
    return TraitflowError(first, f"{os.path.basename(second)} is a second file for the same vector (method {method}, "
                          f"layer {layer}); which one is meant cannot be guessed",
                          f"keep one of {os.path.basename(first)} and {os.path.basename(second)} (delete or move the "
                          "other)")


def choose_vector(available, method, layer, where):
    """Pick (method, layer) from what exists; 'auto' takes the first of METHODS present."""
    methods = METHODS if method == "auto" else (method,)
    for m in methods:
        if (m, layer) in available:
            return m, available[(m, layer)]
    raise TraitflowError(where, f"no vector for method={method} layer={layer} (available: {describe(available)})",
                         "set vector.method / vector.layer to one that exists, or add extraction examples")


def describe(available):
    """'probe: layers 0-3, 5; mean_diff: layer 2' for {(method, layer): path}."""
    by_method = {}
    for m, l in sorted(available):
        by_method.setdefault(m, []).append(l)
    return "; ".join(f"{m}: layer{'s' if len(ls) > 1 else ''} {_ranges(ls)}" for m, ls in by_method.items()) or "none"


def _ranges(layers):
    runs = []
    for l in layers:
        if runs and l == runs[-1][1] + 1:
            runs[-1][1] = l
        else:
            runs.append([l, l])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def load_vector(path, d_model=None):
    """A 1-D float32 tensor of the file's direction (scaled to max |v| = 1: projections are scale-free),
    checked for dtype, shape, finiteness and a non-zero entry."""
    import torch

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        try:
            tensors = load_file(path)
        except Exception as err:  # safetensors never runs code; this is a truncated or foreign file
            raise TraitflowError(path, f"not a readable safetensors file ({type(err).__name__})",
                                 "re-save it with safetensors.torch.save_file") from None
        if len(tensors) != 1:
            raise TraitflowError(path, f"expected one tensor, found {sorted(tensors)}",
                                 "save the vector alone in the file")
        vec = next(iter(tensors.values()))
    else:
        from ..core.formats import load_pt
        vec = load_pt(path)
        if isinstance(vec, dict) and len(vec) == 1:
            vec = next(iter(vec.values()))
    if not isinstance(vec, torch.Tensor):
        raise TraitflowError(path, f"holds a {type(vec).__name__}, not a tensor", "save a 1-D tensor")
    if vec.is_complex():  # .float() would drop the imaginary part (with only a warning)
        raise TraitflowError(path, f"vector has a complex dtype ({str(vec.dtype).removeprefix('torch.')}); a trait "
                             "direction is real", "save the real vector (e.g. v.real, if the imaginary part is noise)")
    if not vec.is_floating_point():  # a mask (v > 0) or an index list (arange) is not a direction
        raise TraitflowError(path, f"vector has a non-float dtype ({str(vec.dtype).removeprefix('torch.')}); a trait "
                             "direction is real-valued", "save the float vector itself (e.g. v.float(), if the values "
                             "really are the direction)")
    vec = vec.detach().squeeze()
    if vec.dim() != 1:
        raise TraitflowError(path, f"vector has shape {list(vec.shape)}, expected 1-D", "save a 1-D tensor")
    if d_model is not None and vec.numel() != d_model:
        raise TraitflowError(path, f"vector has {vec.numel()} entries but the model's hidden size is {d_model}",
                             "use a vector extracted from this model")
    return direction(vec, path)


def direction(vec, where):
    """vec divided by its largest magnitude, as float32: the same direction, safe to normalise.

    Projection is h . v / ||v||, blind to v's scale. Dividing by max |v| in the
    file's own precision (float64 included) first means neither v * 1e30 (whose
    norm overflows float32) nor v * 1e-30 (whose squares underflow to 0) changes
    it; only a vector with no non-zero entry is all zeros.
    """
    import torch

    vec = vec.detach()
    if not torch.isfinite(vec).all():
        raise TraitflowError(where, "vector contains NaN or infinite values", "re-extract the vector")
    biggest = vec.abs().max()
    if biggest == 0:
        raise TraitflowError(where, "vector is all zeros (no direction to project on)", "re-extract the vector")
    return (vec.double() / biggest.double()).float()


def unit_rows(vectors):
    """[n, d] float32 unit rows (h . unit = h . v / ||v||), normalised in float64 after scaling each row
    by its largest magnitude, so that no row's norm overflows or underflows."""
    import torch

    v = torch.as_tensor(vectors).detach().cpu().double().reshape(-1, vectors.shape[-1])
    v = v / v.abs().amax(dim=-1, keepdim=True)
    return (v / v.norm(dim=-1, keepdim=True)).float()


def read_metadata(vector_path):
    path = metadata_path(vector_path)
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            meta = json.load(fh)
    except (ValueError, UnicodeDecodeError) as err:
        raise TraitflowError(path, f"not valid JSON ({err})", "fix or delete the metadata file") from None
    return meta if isinstance(meta, dict) else {}


def heldout_by_position(paths):
    """{(trait, position, presentation): {layer: held-out accuracy}} from extraction's probe metadata files
    (each names its trait, position and layer; other files are skipped), sorted."""
    table = {}
    for path in paths:
        meta = read_metadata(re.sub(r"_metadata\.json$", ".pt", path))
        if meta.get("method") == "probe" and "heldout_accuracy" in meta:
            key = (meta.get("trait"), meta.get("position", "all"), meta.get("presentation", "raw"))
            table.setdefault(key, {})[int(meta["layer"])] = meta["heldout_accuracy"]
    return dict(sorted(table.items()))


def check_vector_model(vector_path, model, allow_mismatch):
    """The original required the same model for extraction and inference: refuse a mismatch."""
    named = read_metadata(vector_path).get("model")
    if named and named != model and not allow_mismatch:
        raise TraitflowError(vector_path, f"vector was extracted from '{named}', not '{model}'",
                             "extract it from this model, or set vector.allow_model_mismatch: true")


VECTOR_CHECKS = ".snakemake/traitflow/vector_checks.json"
CHECKS_VERSION = 4  # part of each cached verdict's key: raise it when load_vector's checks change


def vector_problems(paths, d_model, cache_path=VECTOR_CHECKS):
    """{path: one-line problem} for the vector files among paths that cannot be projected on.

    Runs at plan time, so that a bad vector leaves its trait out before any job
    (one capture job serves every trait). Each verdict is cached by the file's
    content (sha256), not its path or mtime: a copied or re-dated workdir, a
    moved experiment and a re-saved identical vector all reuse it, and torch
    (3 s to import, at every Snakemake start) is imported only when some vector's
    bytes are new. Files that do not exist yet (to be extracted) are not checked;
    a symlink whose target is gone is a problem (its trait is left out, not the
    whole run stopped by Snakemake's MissingInputException).
    """
    try:
        with open(cache_path, encoding="utf-8") as fh:
            cache = json.load(fh)
    except (OSError, ValueError):
        cache = {}
    problems, changed = {}, False
    for path in paths:
        try:
            with open(path, "rb") as fh:
                digest = hashlib.sha256(fh.read()).hexdigest()
        except OSError:
            if os.path.islink(path):
                problems[path] = str(TraitflowError(path, f"a symlink to {os.readlink(path)}, which does not exist",
                                                    "restore the file it points to, or replace the link with the vector"))
            continue
        key = f"{digest}:{d_model}:{CHECKS_VERSION}"
        if key not in cache:
            try:
                load_vector(path, d_model)
                cache[key] = None
            except TraitflowError as err:  # stored without the path: the same bytes elsewhere are named there
                cache[key] = [err.problem, err.fix]
            changed = True
        if cache[key] is not None:
            problems[path] = str(TraitflowError(path, *cache[key]))
    if changed:
        from ..core.formats import save_json
        try:
            save_json(cache, cache_path)
        except OSError:  # a read-only working directory only loses the cache
            pass
    return problems

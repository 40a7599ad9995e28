"""Format verifiers for capture files: every problem as one line, never a traceback.

verify_all_layers(record, path) and verify_single_layer(record) return the problems
found (empty: valid), checking keys, shapes against the token counts and the
metadata's layer count and model sizes, dtypes, attention row lengths and sums,
and finiteness. An all-layers record is a per-trait .pt (whose shared file must
exist and hold the same tokens), its .json (projections and metadata), or the
seed's full dict from traitflow.load_seed_format; verify_shared checks a shared
per-prompt .safetensors file.
The capture scripts call check() on every record before writing it, and
scripts/verify_*_format.py are the command lines.
"""

import os
import sys

import numpy as np
import torch

from ..core.errors import TraitflowError
from ..core.formats import load_json, load_pt, shared_file_of
from ..core.shared import SHARED_FORMAT, attention_offset, read_shared
from ..model.single_layer import ATTENTION, DECOMPOSITION, MLP, RESIDUAL

SIDES = ("prompt", "response")
# Head-mean and per-head attention rows are softmax outputs; .json rounds each entry.
ROW_SUM_TOLERANCE = 1e-2


def _at(where, key):
    return f"{where}.{key}" if where else key


class Problems(list):
    """Problems found so far. Helpers return None for what is missing or broken, so checks go on."""

    def key(self, d, key, where=""):
        if d is None:
            return None
        if not isinstance(d, dict):
            self.append(f"{where or 'file'}: expected a dict, found {type(d).__name__}")
            return None
        if key not in d:
            self.append(f"{where + ': ' if where else ''}missing key '{key}'")
            return None
        return d[key]

    def integer(self, x, where):
        if x is not None and (isinstance(x, bool) or not isinstance(x, int)):
            self.append(f"{where}: expected an integer, found {x!r}")
            return None
        return x

    def array(self, x, where, shape, float32=False):
        """x as a tensor when it has this shape and only finite values; None (and a problem) otherwise."""
        if x is None:
            return None
        if isinstance(x, torch.Tensor):
            if not x.is_floating_point() or (float32 and x.dtype != torch.float32):
                self.append(f"{where}: dtype {str(x.dtype).removeprefix('torch.')}, expected "
                            f"{'float32' if float32 else 'a floating-point type'}")
                return None
            t = x
        elif isinstance(x, list):
            try:
                t = torch.tensor(x, dtype=torch.float64)
            except (TypeError, ValueError):
                self.append(f"{where}: not a rectangular array of numbers")
                return None
            if t.numel() == 0 and 0 in shape:  # json cannot say the shape of an empty array
                t = t.reshape(shape)
        else:
            self.append(f"{where}: expected an array, found {type(x).__name__}")
            return None
        if list(t.shape) != list(shape):
            self.append(f"{where}: shape {list(t.shape)}, expected {list(shape)}")
            return None
        if not torch.isfinite(t).all():
            self.append(f"{where}: contains NaN or infinite values")
            return None
        return t

    def attention(self, x, where, shape):
        t = self.array(x, where, shape)
        if t is not None and t.numel():
            deviation = (t.double().sum(-1) - 1).abs().max().item()
            if deviation > ROW_SUM_TOLERANCE:
                self.append(f"{where}: attention rows do not sum to 1 (off by up to {deviation:.3g})")

    def rows(self, x, where, n_rows, what):
        """A list with one entry per response token."""
        if x is None:
            return []
        if not isinstance(x, list):
            self.append(f"{where}: expected a list (one entry per response token), found {type(x).__name__}")
            return []
        if len(x) != n_rows:
            self.append(f"{where}: {len(x)} rows, expected {n_rows} ({what})")
            return []
        return x

    def segment(self, record, side):
        seg = self.key(record, side)
        n = self.integer(self.key(seg, "n_tokens", side), f"{side}.n_tokens")
        if not isinstance(self.key(seg, "text", side), (str, type(None))):
            self.append(f"{side}.text: expected a string")
        for field in ("tokens", "token_ids"):
            x = self.key(seg, field, side)
            if x is None or n is None:
                continue
            if not isinstance(x, list) or len(x) != n:
                self.append(f"{side}.{field}: {len(x) if isinstance(x, list) else type(x).__name__} entries, "
                            f"expected {n} ({side}.n_tokens)")
            elif field == "token_ids" and not all(isinstance(i, int) and not isinstance(i, bool) for i in x):
                self.append(f"{side}.token_ids: expected integers")
        return n


def _layer_keys(p, d, where, n_layers):
    """True when d holds exactly layer_0 .. layer_{n_layers - 1}."""
    if d is None:
        return False
    if not isinstance(d, dict):
        p.append(f"{where}: expected a dict of layer_{{l}} entries, found {type(d).__name__}")
        return False
    expected = {f"layer_{l}" for l in range(n_layers)}
    if set(d) == expected:
        return True
    if len(d) != n_layers:
        p.append(f"{where}: {len(d)} layers, expected {n_layers} (metadata.n_layers)")
    else:
        p.append(f"{where}: keys {sorted(set(d) - expected)[:3]} are not layer_0..layer_{n_layers - 1}")
    return False


def verify_shared(path):
    """Problems in a shared per-prompt file: header, shapes, finite norms, attention rows that sum to 1."""
    try:
        shared = read_shared(path)
    except FileNotFoundError:
        return ["file not found"]
    except TraitflowError as err:  # read_shared's one line for a truncated or foreign file
        return [err.problem]
    except Exception as err:
        return [f"not a readable traitflow shared file ({type(err).__name__}: {str(err)[:120]})"]
    p = Problems()
    meta, T, L = shared.metadata, shared.n_tokens, shared.n_layers
    if meta.get("format") != SHARED_FORMAT:
        p.append(f"__metadata__.format: {meta.get('format')!r}, expected {SHARED_FORMAT!r}")
    if not 0 <= shared.n_prompt <= T:
        p.append(f"__metadata__.n_prompt: {shared.n_prompt} is not within the {T} tokens")
    norms = shared.residual_norms
    if norms is None or list(norms.shape) != [T, L, 3]:
        p.append(f"residual_norms: shape {None if norms is None else list(norms.shape)}, expected {[T, L, 3]}")
    elif not np.isfinite(norms).all() or (norms < 0).any():
        p.append("residual_norms: contains NaN, infinite or negative values")
    packed = shared.packed_attention
    if packed is not None:
        if packed.shape != (attention_offset(T, L),):
            p.append(f"attention: {packed.shape[0]} entries, expected {attention_offset(T, L)} "
                     f"(n_layers * T * (T + 1) / 2 with T = {T})")
        else:
            for t in range(T):
                deviation = np.abs(shared.attention_rows(t).sum(-1) - 1).max()
                if deviation > ROW_SUM_TOLERANCE:
                    p.append(f"attention: token {t}'s rows do not sum to 1 (off by up to {deviation:.3g})")
                    break
    ids, probs = shared.logit_lens_ids, shared.logit_lens_probs
    layers = shared.logit_lens_layers
    if (ids is None) != (probs is None) or ids is not None and (ids.shape != probs.shape
                                                                or ids.shape[:2] != (T, len(layers))):
        p.append("logit_lens_ids / logit_lens_probs: missing one of the pair, or shapes are not "
                 "[T, len(logit_lens_layers), k]")
    elif ids is not None and (layers != sorted(set(layers)) or not all(0 <= x < L for x in layers)):
        p.append(f"logit_lens_layers: {layers} is not an ascending list of layers within 0-{L - 1}")
    return p


def _shared_agrees(p, record, path):
    """The shared file a per-trait .pt names exists and holds the same tokens and layers."""
    shared_path = shared_file_of(path, record)
    if not os.path.exists(shared_path):
        p.append(f"metadata.shared_file: {shared_path} does not exist")
        return
    problems = verify_shared(shared_path)
    p.extend(f"{shared_path}: {problem}" for problem in problems)
    if problems:
        return
    shared = read_shared(shared_path)
    tokens = record["prompt"]["token_ids"] + record["response"]["token_ids"]
    if shared.token_ids.tolist() != tokens or shared.n_prompt != record["prompt"]["n_tokens"]:
        p.append(f"metadata.shared_file: {shared_path} holds other tokens than this file")
    if shared.n_layers != record["metadata"].get("n_layers"):
        p.append(f"metadata.shared_file: {shared_path} has {shared.n_layers} layers, this file "
                 f"{record['metadata'].get('n_layers')}")


def _trait_json(p, record):
    """A per-trait .json: metadata with the token counts, and projections."""
    meta = p.key(record, "metadata")
    n = {k: p.integer(p.key(meta, k, "metadata"), f"metadata.{k}") for k in ("n_prompt", "n_response", "n_layers")}
    if None in n.values():
        return p
    for side in SIDES:
        p.array(p.key(p.key(record, "projections"), side, "projections"), f"projections.{side}",
                [n[f"n_{side}"], n["n_layers"], 3])
    return p


def verify_all_layers(record, path=None):
    """Problems in an all-layers record: a per-trait .pt (with path: its shared file too), its .json, or the seed dict."""
    p = Problems()
    if not isinstance(record, dict):
        return [f"file: expected a dict, found {type(record).__name__}"]
    if "prompt" not in record and "projections" in record:
        return _trait_json(p, record)
    n_prompt, n_response = p.segment(record, "prompt"), p.segment(record, "response")
    meta = p.key(record, "metadata")
    n_layers = p.integer(p.key(meta, "n_layers", "metadata"), "metadata.n_layers")
    sublayers = p.key(meta, "sublayers", "metadata")
    if sublayers is not None and len(sublayers) != 3:
        p.append(f"metadata.sublayers: {len(sublayers)} names, expected 3")
    projections = p.key(record, "projections")
    if None in (n_prompt, n_response, n_layers):
        return p
    for side, n in zip(SIDES, (n_prompt, n_response)):
        p.array(p.key(projections, side, "projections"), f"projections.{side}", [n, n_layers, 3], float32=True)
    if "attention_weights" not in record:  # our per-trait file: attention lives in the shared file
        if p.key(meta, "shared_file", "metadata") is not None and path is not None and not p:
            _shared_agrees(p, record, path)
        return p
    attention = record["attention_weights"]
    prompt = p.key(attention, "prompt", "attention_weights")
    if _layer_keys(p, prompt, "attention_weights.prompt", n_layers):
        for name, x in prompt.items():
            p.attention(x, f"attention_weights.prompt.{name}", [n_prompt, n_prompt])
    rows = p.rows(p.key(attention, "response", "attention_weights"), "attention_weights.response",
                  n_response, "response.n_tokens")
    for j, row in enumerate(rows):
        where = f"attention_weights.response[{j}]"
        if _layer_keys(p, row, where, n_layers):
            for name, x in row.items():
                p.attention(x, f"{where}.{name}", [n_prompt + j + 1])
    return p


def _internals(p, internals, n_prompt, n_response, dims):
    heads, kv, d = dims["n_heads"] * dims["head_dim"], dims["n_kv_heads"] * dims["head_dim"], dims["d_model"]
    width = {"q_proj": heads, "q_rotary": heads, "z": heads, "k_proj": kv, "v_proj": kv, "k_rotary": kv,
             **{name: dims["d_mlp"] for name in MLP}, "down_proj": d, **{name: d for name in RESIDUAL}}
    for side, n in zip(SIDES, (n_prompt, n_response)):
        tensors = p.key(internals, side, "internals")
        groups = {}
        for group, names in (("attention", ATTENTION), ("mlp", MLP), ("residual", RESIDUAL)):
            where = f"internals.{side}.{group}"
            groups[group] = p.key(tensors, group, f"internals.{side}")
            for name in names:
                p.array(p.key(groups[group], name, where), f"{where}.{name}", [n, width[name]])
        weights = p.key(groups["attention"], "attn_weights", f"internals.{side}.attention")
        where = f"internals.{side}.attention.attn_weights"
        if side == "prompt":
            p.attention(weights, where, [dims["n_heads"], n_prompt, n_prompt])
        else:
            for j, row in enumerate(p.rows(weights, where, n_response, "response.n_tokens")):
                p.attention(row, f"{where}[{j}]", [dims["n_heads"], n_prompt + j + 1])


def _decomposition(p, record, n_tokens, dims):
    dec = p.key(record, "decomposition")
    found = {name: p.array(p.key(dec, name, "decomposition"), f"decomposition.{name}", [n_tokens])
             for name in DECOMPOSITION}
    heads = p.array(p.key(dec, "head_contributions", "decomposition"), "decomposition.head_contributions",
                    [dims["n_heads"], n_tokens])
    attn = found["attn_contribution"]
    if heads is not None and attn is not None:
        bias = dec.get("attn_bias_contribution")
        total = heads.double().sum(0) + (torch.as_tensor(bias, dtype=torch.float64) if bias is not None else 0)
        gap = (total - attn.double()).abs().max().item() if n_tokens else 0.0
        if gap > 1e-3 * (1 + attn.double().abs().max().item()):
            p.append(f"decomposition.head_contributions: heads sum to attn_contribution only within {gap:.3g}")
    top = p.key(record, "top_neurons")
    indices = p.key(top, "indices", "top_neurons")
    if indices is None:
        return
    if not isinstance(indices, list) or not all(isinstance(i, int) and 0 <= i < dims["d_mlp"] for i in indices):
        p.append(f"top_neurons.indices: expected a list of neuron ids in 0..{dims['d_mlp'] - 1} (metadata.d_mlp)")
        return
    p.array(p.key(top, "contributions", "top_neurons"), "top_neurons.contributions", [len(indices), n_tokens])


def verify_single_layer(record, path=None):
    """Problems in a single-layer record: a layer-internals file, a per-trait file, or load_seed_format's dict."""
    p = Problems()
    if not isinstance(record, dict):
        return [f"file: expected a dict, found {type(record).__name__}"]
    n_prompt, n_response = p.segment(record, "prompt"), p.segment(record, "response")
    layer = p.integer(p.key(record, "layer"), "layer")
    meta = p.key(record, "metadata")
    has_internals, has_decomposition = "internals" in record, "decomposition" in record
    if not (has_internals or has_decomposition):
        p.append("missing key 'internals' or 'decomposition' (neither a layer-internals nor a per-trait file)")
    needed = ["n_layers", "n_heads", "d_mlp"] + (["d_model", "n_kv_heads", "head_dim"] if has_internals else [])
    dims = {k: p.integer(p.key(meta, k, "metadata"), f"metadata.{k}") for k in needed}
    if layer is not None and dims["n_layers"] is not None and not 0 <= layer < dims["n_layers"]:
        p.append(f"layer: {layer} is not one of the model's layers 0..{dims['n_layers'] - 1} (metadata.n_layers)")
    if isinstance(meta, dict) and meta.get("layer", layer) != layer:
        p.append(f"metadata.layer: {meta['layer']}, but the file is for layer {layer}")
    if None in (n_prompt, n_response, *dims.values()):
        return p
    if has_internals:
        _internals(p, record["internals"], n_prompt, n_response, dims)
    if has_decomposition:
        _decomposition(p, record, n_prompt + n_response, dims)
    return p


VERIFIERS = {"all_layers": verify_all_layers, "single_layer": verify_single_layer}


def verify_file(path, kind):
    """Problems in one .pt, .json or shared .safetensors file of the given kind ('all_layers' or 'single_layer')."""
    if path.endswith(".safetensors"):
        return verify_shared(path)
    try:
        record = load_json(path) if path.endswith(".json") else load_pt(path)
    except TraitflowError as err:
        return [err.problem]
    except FileNotFoundError:
        return ["file not found"]
    except (OSError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        return [f"cannot read: {err}"]
    return VERIFIERS[kind](record, path)


def check(record, kind, where):
    """Raise a TraitflowError naming every problem, so a bad record fails its job instead of being written.

    where is the path the record will be written to (its shared file is checked relative to it).
    """
    problems = VERIFIERS[kind](record, where)
    if problems:
        raise TraitflowError(where, f"{len(problems)} format problem(s): " + "; ".join(problems[:5]),
                             "this is a traitflow bug; please report it with this line")


def cli(argv, kind):
    """scripts/verify_*_format.py FILE...: one line per problem, exit status 1 when any file has one."""
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: verify_{kind}_format.py FILE.pt|FILE.json|SHARED.safetensors ...", file=sys.stderr)
        return 2
    bad = 0
    for path in argv:
        problems = verify_file(path, kind)
        for problem in problems:
            print(f"{path}: {problem}")
        bad += bool(problems)
    print(f"{len(argv) - bad} of {len(argv)} file(s) valid", file=sys.stderr)
    return 1 if bad else 0

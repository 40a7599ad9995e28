"""Trait-independent data, once per prompt: residual norms, head-mean attention, the logit lens.

One safetensors file per prompt (docs/formats.md): no pickle, memory-mapped reads,
and a browser reads it as typed arrays from a few byte ranges. numpy only (no
torch), so tables, the overview and the viewer index read it cheaply.

Attention rows are stored token-major as a lower triangle, token t's block
[n_layers, t + 1] at element n_layers * t * (t + 1) / 2: one token's rows at every
layer are one contiguous byte range. Weights lie in [0, 1] and are stored as
16-bit fixed point (value / 65535): a uniform max abs error of 1/131070 = 7.6e-6,
at half the bytes of float32 (float16 would lose up to 2.4e-4 near 1).
"""

import json
from dataclasses import dataclass, field

import numpy as np

from .constants import SUBLAYERS, __version__
from .damage import reports_damage
from .fileio import atomic_write, now

SHARED_FORMAT = "traitflow-shared/1"
ATTENTION_SCALE = 65535
ATTENTION_MAX_ERROR = 0.5 / ATTENTION_SCALE
ATTENTION_ENCODING = ("uint16 fixed point, weight = value / 65535; token-major lower triangle: token t holds "
                      "[n_layers, t + 1] at element n_layers * t * (t + 1) / 2")


def attention_offset(t, n_layers):
    """Element offset of token t's [n_layers, t + 1] block in the packed attention."""
    return n_layers * t * (t + 1) // 2


def encode_attention(weights):
    """Weights in [0, 1] -> uint16 fixed-point codes."""
    return np.round(np.clip(np.asarray(weights, dtype=np.float32), 0.0, 1.0) * ATTENTION_SCALE).astype(np.uint16)


def pack_attention(attention):
    """[L, T, T] head-mean weights, or their uint16 codes (only the causal entries are read) -> uint16 packed."""
    attention = np.asarray(attention)
    if attention.dtype != np.uint16:
        attention = encode_attention(attention)
    L, T, _ = attention.shape
    rows, cols = np.tril_indices(T)  # row-major: token 0's key, token 1's two keys, ...
    # [L, T(T+1)/2] in (token, key) order, then token-major with layers inside each token's block.
    tri = attention[:, rows, cols]
    starts = rows * (rows + 1) // 2  # where each entry's token begins in the per-layer triangle
    packed = np.empty(L * len(rows), dtype=np.uint16)
    # Entry (t, k) of layer l lands at L * t(t+1)/2 + l * (t + 1) + k.
    index = (L * starts + cols)[None, :] + np.arange(L)[:, None] * (rows + 1)[None, :]
    packed[index.ravel()] = tri.ravel()
    return packed


def unpack_rows(packed, t, n_layers):
    """Token t's attention rows at every layer: float32 [n_layers, t + 1]."""
    start = attention_offset(t, n_layers)
    block = np.asarray(packed[start:start + n_layers * (t + 1)], dtype=np.float32)
    return block.reshape(n_layers, t + 1) / ATTENTION_SCALE


@dataclass
class SharedData:
    """One prompt's shared data. attention stays packed (memory-mapped) until asked for."""

    token_ids: np.ndarray  # int32 [T]
    n_prompt: int
    n_layers: int
    residual_norms: np.ndarray  # float32 [T, L, 3]
    metadata: dict
    packed_attention: np.ndarray | None = None  # uint16, see attention_offset
    logit_lens_ids: np.ndarray | None = None  # int32 [T, len(logit_lens_layers), k]
    logit_lens_probs: np.ndarray | None = None  # float32 [T, len(logit_lens_layers), k]
    logit_lens_tokens: dict = field(default_factory=dict)  # id -> token string
    logit_lens_layers: list = field(default_factory=list)  # the layers the lens covers, ascending

    def lens_top(self, t, layer):
        """[(token string, probability)] of the lens at token t and layer; [] where the lens does not cover it."""
        if self.logit_lens_ids is None or layer not in self.logit_lens_layers:
            return []
        j = self.logit_lens_layers.index(layer)
        return [(self.logit_lens_tokens.get(int(i), f"#{int(i)}"), float(p))
                for i, p in zip(self.logit_lens_ids[t, j], self.logit_lens_probs[t, j])]

    @property
    def n_tokens(self):
        return len(self.token_ids)

    def attention_rows(self, t):
        """[n_layers, t + 1] float32: token t's head-mean attention row at every layer."""
        if self.packed_attention is None:
            raise ValueError("this shared file holds no attention (capture.attention was off)")
        return unpack_rows(self.packed_attention, t, self.n_layers)

    def attention_matrix(self):
        """[n_layers, T, T] float32, zero above the diagonal."""
        T = self.n_tokens
        out = np.zeros((self.n_layers, T, T), dtype=np.float32)
        for t in range(T):
            out[:, t, :t + 1] = self.attention_rows(t)
        return out


def write_shared(path, token_ids, n_prompt, residual_norms, attention=None, logit_lens=None, metadata=None):
    """Write one prompt's shared file atomically.

    residual_norms: [T, L, 3]. attention: [L, T, T] head-mean weights or None.
    logit_lens: (ids [T, n, k], probs [T, n, k], {id: token string}[, layers]) or None; layers: the n
    ascending layers the lens covers (default: every layer, n = L), recorded as logit_lens_layers.
    metadata: extra string-able provenance (model, dtype, response_source, ...).
    """
    from safetensors.numpy import save

    residual_norms = np.ascontiguousarray(residual_norms, dtype=np.float32)
    T, L, _ = residual_norms.shape
    tensors = {"token_ids": np.asarray(token_ids, dtype=np.int32), "residual_norms": residual_norms}
    meta = {"format": SHARED_FORMAT, "n_prompt": n_prompt, "n_response": T - n_prompt, "n_layers": L,
            "sublayers": list(SUBLAYERS), "traitflow_version": __version__, "created": now(), **(metadata or {})}
    if attention is not None:
        tensors["attention"] = pack_attention(attention)
        meta["attention_encoding"] = ATTENTION_ENCODING
    if logit_lens is not None:
        ids, probs, strings, *layers = logit_lens
        tensors["logit_lens_ids"] = np.ascontiguousarray(ids, dtype=np.int32)
        tensors["logit_lens_probs"] = np.ascontiguousarray(probs, dtype=np.float32)
        layers = [int(layer) for layer in (layers[0] if layers else range(L))]
        if len(layers) != tensors["logit_lens_ids"].shape[1] or layers != sorted(set(layers)) or \
                not all(0 <= layer < L for layer in layers):
            raise ValueError(f"logit lens layers {layers} do not match its {tensors['logit_lens_ids'].shape[1]} "
                             f"rows in ascending order within 0-{L - 1}")
        meta["logit_lens_k"] = int(tensors["logit_lens_ids"].shape[-1])
        meta["logit_lens_layers"] = layers
        meta["logit_lens_tokens"] = {str(k): v for k, v in strings.items()}
    text = {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    data = save(tensors, metadata=text)  # bytes: save_file would recreate the file with mode 0600

    def write(tmp):
        with open(tmp, "wb") as fh:
            fh.write(data)
    atomic_write(path, write)


@reports_damage("safetensors file")
def read_metadata(path):
    """The header's __metadata__, parsed (numbers and JSON back to Python values)."""
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as fh:
        raw = fh.metadata() or {}
    return {k: _parse(v) for k, v in raw.items()}


def _parse(value):
    try:
        return json.loads(value)
    except ValueError:
        return value


@reports_damage("traitflow shared file")
def read_shared(path):
    """A prompt's SharedData (tensors memory-mapped by safetensors; attention left packed)."""
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as fh:
        meta = {k: _parse(v) for k, v in (fh.metadata() or {}).items()}
        names = set(fh.keys())
        get = lambda name: fh.get_tensor(name) if name in names else None
        data = SharedData(token_ids=get("token_ids"), n_prompt=int(meta["n_prompt"]), n_layers=int(meta["n_layers"]),
                          residual_norms=get("residual_norms"), metadata=meta, packed_attention=get("attention"),
                          logit_lens_ids=get("logit_lens_ids"), logit_lens_probs=get("logit_lens_probs"),
                          logit_lens_tokens={int(k): v for k, v in meta.get("logit_lens_tokens", {}).items()})
    if data.logit_lens_ids is not None:  # files written before logit_lens_layers covered every layer
        data.logit_lens_layers = [int(x) for x in meta.get("logit_lens_layers", range(data.logit_lens_ids.shape[1]))]
    return data

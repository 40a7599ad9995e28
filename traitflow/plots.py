"""Report figures: token x layer heatmaps and cross-trait trajectories (matplotlib, Agg).

Figures are built with matplotlib.figure.Figure, never pyplot: no global state,
no display needed. Records are all-layers captures, loaded from .pt or .json.
"""

import math
import warnings

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from . import SUBLAYERS  # noqa: E402

MAX_LABELS = 160  # more tokens than this: label every k-th token so labels stay legible


def projections(record):
    """[tokens, layers, 3] float array over prompt then response tokens."""
    n_layers = record["metadata"]["n_layers"]
    parts = [np.asarray(record["projections"][side], dtype=np.float32).reshape(-1, n_layers, len(SUBLAYERS))
             for side in ("prompt", "response")]
    return np.concatenate(parts)


def tokens(record):
    return list(record["prompt"]["tokens"]) + list(record["response"]["tokens"])


_VISIBLE = {"\n": "\u21b5", "\t": "\u21e5", "\r": "\u240d"}


def show_token(token):
    """A token as a one-line label: whitespace and control characters made visible (as the viewer does)."""
    shown = "".join(_VISIBLE.get(c, f"\\x{ord(c):02x}") if ord(c) < 32 or ord(c) == 127 else c for c in token)
    return shown or "\u2205"


def heatmap_matrix(record, point):
    """[layers, tokens] scores at one sublayer point (what the heatmap draws)."""
    return projections(record)[:, :, SUBLAYERS.index(point)].T


def trajectory(record, layer, point):
    """[tokens] scores at one layer and point (one line of the cross-trait plot)."""
    return projections(record)[:, layer, SUBLAYERS.index(point)]


def _short(text, width=90):
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _token_axis(ax, labels, n_prompt):
    step = max(1, math.ceil(len(labels) / MAX_LABELS))
    ticks = list(range(0, len(labels), step))
    # parse_math=False: a token holding '$' must not be read as mathtext.
    ax.set_xticks(ticks, [show_token(labels[t]) for t in ticks], rotation=90, fontsize=7, parse_math=False)
    if 0 < n_prompt < len(labels):
        ax.axvline(n_prompt - 0.5, color="black", linewidth=1.2)


def _width(n_tokens):
    return min(2.5 + 0.16 * n_tokens, 36.0)


def heatmap_figure(record, point):
    """Token x layer heatmap of one (trait, prompt), diverging colours centred on zero."""
    matrix = heatmap_matrix(record, point)
    labels, n_prompt = tokens(record), record["prompt"]["n_tokens"]
    meta = record["metadata"]
    limit = float(np.abs(matrix).max()) or 1.0
    fig = Figure(figsize=(_width(len(labels)), 1.8 + 0.3 * matrix.shape[0] + 0.6), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit, origin="lower", aspect="auto",
                      interpolation="nearest")
    _token_axis(ax, labels, n_prompt)
    ax.set_ylabel("layer")
    ax.set_yticks(range(matrix.shape[0]))
    ax.set_title(f"{meta['trait']} at {point} ({meta['method']} vector from layer {meta['vector_layer']}); "
                 f"prompt | response divider at token {n_prompt}\n{_short(record['prompt']['text'])}",
                 fontsize=9, loc="left", parse_math=False)
    fig.colorbar(image, ax=ax, label="projection onto trait vector", fraction=0.03, pad=0.01)
    return fig


def cross_trait_figure(records, layer, point):
    """Every trait's score per token at one layer and point, on one shared prompt + response.

    records: {trait: record}; all must hold the same tokens (responses are shared).
    """
    first = next(iter(records.values()))
    labels, n_prompt = tokens(first), first["prompt"]["n_tokens"]
    for trait, record in records.items():
        if tokens(record) != labels:
            raise ValueError(f"trait {trait} holds other tokens for this prompt; responses must be shared")
    fig = Figure(figsize=(_width(len(labels)), 4.2), layout="constrained")
    ax = fig.add_subplot()
    for trait, record in records.items():
        ax.plot(trajectory(record, layer, point), marker=".", linewidth=1.2, label=trait)
    ax.axhline(0.0, color="grey", linewidth=0.6)
    _token_axis(ax, labels, n_prompt)
    ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.set_ylabel(f"projection at layer {layer}, {point}")
    ax.set_title(f"All traits at layer {layer}, {point}; prompt | response divider at token {n_prompt}\n"
                 f"{_short(first['prompt']['text'])}", fontsize=9, loc="left", parse_math=False)
    ax.legend(fontsize=8, loc="best")
    return fig


def save_figure(fig, path, dpi=100):
    from .formats import atomic_write

    with warnings.catch_warnings():
        # Tokens from any language: a glyph the font lacks is drawn as a box, not worth a warning per token.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))

"""Report figures: token x layer heatmaps and cross-trait trajectories (matplotlib, Agg).

Figures are built with matplotlib.figure.Figure, never pyplot: no global state,
no display needed. Captures are what traitflow.core.formats.load_capture returns for a
per-trait all-layers .pt: projections (and cosine) [T, L, 3] over prompt then
response tokens, tokens, n_prompt, metadata.

Long sequences stay legible: the tokens are cut into stacked panels of at most
TOKENS_PER_PANEL columns (a few hundred tokens make a few rows, each token wide
enough for its label), sharing one colour scale; deep models get thinner layer
rows with every few layers labelled.
"""

import math
import warnings

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..core.constants import SUBLAYERS  # noqa: E402
from .report_tables import show_token  # noqa: E402  (tokens shown as in the viewer and the report tables)

TOKENS_PER_PANEL = 125  # columns per panel: 0.14 in (about 10 pt) per token at the widest figure
MAX_WIDTH = 20.0  # inches
TOKEN_WIDTH = 0.16  # inches per token below the widest figure


def projections(capture):
    """[tokens, layers, 3] float array over prompt then response tokens."""
    return np.asarray(capture["projections"], dtype=np.float32)


def tokens(capture):
    return list(capture["tokens"])


def heatmap_matrix(capture, point, measure="projections"):
    """[layers, tokens] scores at one sublayer point (what the heatmap draws)."""
    return np.asarray(capture[measure], dtype=np.float32)[:, :, SUBLAYERS.index(point)].T


def trajectory(capture, layer, point):
    """[tokens] scores at one layer and point (one line of the cross-trait plot)."""
    return projections(capture)[:, layer, SUBLAYERS.index(point)]


def panels(n_tokens, per_panel=TOKENS_PER_PANEL):
    """[(start, end)] token ranges of the stacked panels: as few as fit, of near-equal width."""
    n = max(1, math.ceil(n_tokens / per_panel))
    width = math.ceil(n_tokens / n) if n_tokens else 0
    return [(a, min(n_tokens, a + width)) for a in range(0, max(n_tokens, 1), max(width, 1))][:n]


def _short(text, width=110):
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _token_axis(ax, labels, n_prompt, start, end):
    """Every token of the panel labelled (panels are narrow enough), the prompt | response divider."""
    ticks = list(range(start, end))
    # parse_math=False: a token holding '$' must not be read as mathtext.
    ax.set_xticks(ticks, [show_token(labels[t]) for t in ticks], rotation=90, fontsize=7, parse_math=False)
    ax.set_xlim(start - 0.5, start - 0.5 + max(end - start, 1))
    if start < n_prompt < end or (n_prompt == start and start > 0):
        ax.axvline(n_prompt - 0.5, color="black", linewidth=1.2)


def _width(columns):
    return min(2.5 + TOKEN_WIDTH * columns, MAX_WIDTH)


def _layer_ticks(n_layers):
    step = 1 if n_layers <= 12 else (2 if n_layers <= 24 else 5)
    ticks = list(range(0, n_layers, step))
    return ticks if ticks[-1] == n_layers - 1 else ticks + [n_layers - 1]


def colour_limit(captures, point, measure="projections"):
    """The largest |score| at one point over several captures: one colour scale for all their heatmaps."""
    values = [np.abs(heatmap_matrix(c, point, measure)).max() for c in captures if np.size(c[measure])]
    return float(max(values)) if values else 1.0


def heatmap_figure(capture, point, text=None, measure="projections", limit=None):
    """Token x layer heatmap of one (trait, prompt), diverging colours centred on zero.

    One panel per TOKENS_PER_PANEL tokens, stacked; layer 0 at the bottom of each.
    text: the prompt, for the title. measure: "projections" or "cosine".
    limit: the colour scale's end (+-limit); default: the largest |value| in this figure.
    Give the same limit to several figures (colour_limit) to make their colours comparable.
    """
    matrix = heatmap_matrix(capture, point, measure)
    labels, n_prompt = tokens(capture), int(capture["n_prompt"])
    meta = capture.get("metadata", {})
    n_layers, n_tokens = matrix.shape
    if limit is None:
        limit = float(np.abs(matrix).max()) if matrix.size else 0.0
    limit = float(limit) or 1.0
    ranges = panels(n_tokens)
    row = 0.3 if n_layers <= 8 else max(0.12, 2.6 / n_layers)
    panel_height = row * n_layers + 1.0  # + the rotated token labels
    size = (_width(max(b - a for a, b in ranges)), 0.9 + panel_height * len(ranges))
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(len(ranges), 1, squeeze=False)[:, 0]
    for ax, (a, b) in zip(axes, ranges):
        image = ax.imshow(matrix[:, a:b], cmap="RdBu_r", vmin=-limit, vmax=limit, origin="lower", aspect="auto",
                          interpolation="nearest", extent=(a - 0.5, b - 0.5, -0.5, n_layers - 0.5))
        _token_axis(ax, labels, n_prompt, a, b)
        ax.set_yticks(_layer_ticks(n_layers))
        ax.set_ylabel("layer", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    what = "cosine with" if measure == "cosine" else "projection onto"
    title = (f"{meta.get('trait', '')} at {point} ({meta.get('method', '?')} vector from layer "
             f"{meta.get('vector_layer', '?')}); {n_tokens} tokens, prompt | response divider at token {n_prompt}")
    if len(ranges) > 1:
        title += f"; tokens {', '.join(f'{a}-{b - 1}' for a, b in ranges)} in {len(ranges)} rows"
    if text:
        title += "\n" + _short(text)
    axes[0].set_title(title, fontsize=9, loc="left", parse_math=False)
    fig.colorbar(image, ax=list(axes), label=f"{what} trait vector", fraction=0.03 if len(ranges) == 1 else 0.015,
                 pad=0.01)
    return fig


def cross_trait_figure(captures, layer, point, text=None):
    """Every trait's score per token at one layer and point, on one shared prompt + response.

    captures: {trait: capture}; all must hold the same tokens (responses are shared).
    Long sequences are cut into stacked panels sharing the y axis.
    """
    first = next(iter(captures.values()))
    labels, n_prompt = tokens(first), int(first["n_prompt"])
    for trait, capture in captures.items():
        if tokens(capture) != labels:
            raise ValueError(f"trait {trait} holds other tokens for this prompt; responses must be shared")
    ranges = panels(len(labels))
    lines = {trait: trajectory(capture, layer, point) for trait, capture in captures.items()}
    values = np.concatenate([v for v in lines.values()]) if lines else np.zeros(1)
    lo, hi = float(min(0.0, values.min())), float(max(0.0, values.max()))
    pad = (hi - lo) * 0.05 or 1.0
    fig = Figure(figsize=(_width(max(b - a for a, b in ranges)), 1.0 + 3.4 * len(ranges)), layout="constrained")
    axes = fig.subplots(len(ranges), 1, squeeze=False)[:, 0]
    x = np.arange(len(labels))
    for ax, (a, b) in zip(axes, ranges):
        for trait, y in lines.items():
            ax.plot(x[a:b], y[a:b], marker=".", markersize=3 if b - a > 60 else 5, linewidth=1.1, label=trait)
        ax.axhline(0.0, color="grey", linewidth=0.6)
        _token_axis(ax, labels, n_prompt, a, b)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_ylabel(f"projection, layer {layer}\n(each trait on its own scale)", fontsize=8)
    title = f"All traits at layer {layer}, {point}; prompt | response divider at token {n_prompt}"
    if text:
        title += "\n" + _short(text)
    axes[0].set_title(title, fontsize=9, loc="left", parse_math=False)
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return fig


# Palette PNG: figures are a few flat colours, a colour map and anti-aliased text, which 256 colours
# hold without visible loss, at a third of the size of matplotlib's RGBA PNG (measured on the demo:
# heatmaps 40 -> 14 KB, cross-trait plots 90 -> 30 KB).
PNG_COLOURS = 256


def png_bytes(fig, dpi=100, colours=PNG_COLOURS):
    """The figure as an optimised palette PNG (white background, no alpha)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    with warnings.catch_warnings():
        # Tokens from any language: a glyph the font lacks is drawn as a box, not worth a warning per token.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if colours:
        image = image.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    image.save(out, format="png", optimize=True)
    return out.getvalue()


def save_figure(fig, path, dpi=100, colours=PNG_COLOURS):
    from ..core.formats import atomic_write

    data = png_bytes(fig, dpi, colours)

    def write(tmp):
        with open(tmp, "wb") as fh:
            fh.write(data)
    atomic_write(path, write)

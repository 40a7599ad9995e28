"""The dose-response figure: per trait, behaviour and fluency against the ratio, vector and random control.

One row per trait and steered layer; columns: `add` behaviour rate (contrast prompts turned into the
behaviour), `subtract` behaviour rate (target prompts still showing it), and the fluency cost (the
unsteered model's NLL per token of the responses; dashed: the chosen ratio's bound). Solid lines are
the vector, dotted its random control of the same norm; ratio 0 is the unsteered baseline on both.
A circle marks the chosen ratio. Rates need a behaviour classifier; without one the behaviour panels
show the read-back score instead.
"""

from ..outputs.plots import save_figure  # sets matplotlib up first (Agg, no pyplot)
from matplotlib.figure import Figure  # noqa: E402

STYLE = {"vector": "-", "random": ":"}
COLOUR = {"add": "#c0392b", "subtract": "#2471a3"}


def _curve(summary, direction, control, position):
    rows = summary[(summary.direction == direction) & (summary.position == position)
                   & summary.control.isin(["none", control])].sort_values("ratio")
    return rows


def dose_response_figure(summary, max_nll_increase):
    """summary: traitflow.steering.table.summary() rows of the traits to draw (a row of panels per trait and layer)."""
    keys = summary[["trait", "layer"]].drop_duplicates().sort_values(["trait", "layer"]).values.tolist()
    directions = [d for d in ("add", "subtract") if d in set(summary.direction)]
    positions = sorted(set(summary.position))
    fig = Figure(figsize=(3.2 * (len(directions) + 1), 2.3 * len(keys) + 0.4), layout="constrained")
    axes = fig.subplots(len(keys), len(directions) + 1, squeeze=False)
    for row, (trait, layer) in enumerate(keys):
        part = summary[(summary.trait == trait) & (summary.layer == layer)]
        rates = part["behaviour"].notna().any()
        measure = "behaviour" if rates else "read_back"
        nll_ax = axes[row][-1]
        for col, direction in enumerate(directions):
            ax = axes[row][col]
            for position in positions:
                suffix = f" ({position})" if len(positions) > 1 else ""
                for control in ("vector", "random"):
                    c = _curve(part, direction, control, position)
                    if c.empty or not (c.control == control).any():
                        continue
                    label = f"{control}{suffix}"
                    ax.plot(c.ratio, c[measure], STYLE[control], marker=".", color=COLOUR[direction], label=label)
                    nll_ax.plot(c.ratio, c.nll, STYLE[control], marker=".", color=COLOUR[direction],
                                label=f"{direction} {label}")
                    chosen = c[c.chosen & (c.control == "vector")]
                    if control == "vector" and not chosen.empty:
                        ax.plot(chosen.ratio, chosen[measure], "o", ms=9, mfc="none", color="black")
                        base = c[c.control == "none"].nll.iloc[0]
                        nll_ax.axhline(base + max_nll_increase, ls="--", lw=0.8, color=COLOUR[direction])
            ax.set_title(f"{trait}, layer {layer}: {direction}", fontsize=9)
            ax.set_ylabel("behaviour rate" if rates else "read-back", fontsize=8)
            if rates:
                ax.set_ylim(-0.05, 1.05)
            ax.legend(fontsize=7, loc="best")
        nll_ax.set_title(f"{trait}, layer {layer}: fluency", fontsize=9)
        nll_ax.set_ylabel("NLL per token (unsteered)", fontsize=8)
        nll_ax.legend(fontsize=6, loc="upper left")
        for ax in axes[row]:
            ax.tick_params(labelsize=7)
            if row == len(keys) - 1:
                ax.set_xlabel("ratio (x mean residual norm)", fontsize=8)
    return fig


def save_dose_response(summary, max_nll_increase, path, dpi=100):
    save_figure(dose_response_figure(summary, max_nll_increase), path, dpi=dpi)

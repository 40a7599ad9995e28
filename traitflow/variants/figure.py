"""The finetuning shift per trait as a bar chart: one group per trait, one bar per (variant, response source)."""

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402


def finetuning_shift_figure(table_csv, png):
    import pandas as pd

    from ..core.fileio import atomic_write

    df = pd.read_csv(table_csv)
    traits = list(dict.fromkeys(df.trait))
    bars = list(dict.fromkeys(zip(df.variant, df.responses_from)))
    fig = Figure(figsize=(1.6 + 1.3 * max(1, len(traits)), 3.2), dpi=110)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(bars))
    for b, (variant, source) in enumerate(bars):
        rows = df[(df.variant == variant) & (df.responses_from == source)].set_index("trait")
        values = [rows["shift"].get(t, float("nan")) for t in traits]
        ax.bar([i + (b - (len(bars) - 1) / 2) * width for i in range(len(traits))], values, width,
               label=f"{variant} on {source}'s responses")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(traits)), traits)
    reference = df.reference.iloc[0] if len(df) else ""
    ax.set_ylabel(f"mean response projection\n(variant - {reference})")
    ax.set_title("Finetuning shift per trait (at each vector's layer)", fontsize=10)
    if bars:
        ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    atomic_write(png, lambda tmp: fig.savefig(tmp, format="png"))

"""The report's text: prompt labels, the dynamics summary table and the vector quality table.

Both tables are small self-contained HTML pages (the Snakemake report shows an HTML
result in a frame; a CSV would only be a download). Their size is bounded whatever
the experiment's size: the dynamics summary holds one row per (trait, method) over
every prompt, and per-prompt rows only for the prompts the report draws figures for
(report.max_prompts); the full table stays in experiments/{exp}/tables/.

No torch, no matplotlib: pandas at most.
"""

import html
import math
import numbers
import os

from ..core.damage import reports_damage
from ..plan.workflow import FEW_EXAMPLES

_VISIBLE = {"\n": "\u21b5", "\t": "\u21e5", "\r": "\u240d"}


def show_token(token):
    """A token as a one-line label: whitespace and control characters made visible (as the viewer does)."""
    shown = "".join(_VISIBLE.get(c, f"\\x{ord(c):02x}") if ord(c) < 32 or ord(c) == 127 else c for c in token)
    return shown or "\u2205"


def short_text(text, width=60):
    """One line of at most width characters: whitespace runs become one space, an ellipsis marks a cut."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "\u2026"


def report_label(text, width=60):
    """A prompt as a Snakemake report label: short_text, with every '{' followed by a zero-width space.

    Snakemake fills wildcards into label strings ('{prompt}' would become the prompt's
    index, '{x}' an error); the invisible character keeps a brace in a prompt literal.
    """
    return short_text(text, width).replace("{", "{\u200b")


def prompt_number(i, n_shown):
    """Zero-padded, so that the report's label columns (sorted as text) keep the prompts' order."""
    return str(i).zfill(len(str(max(n_shown - 1, 0))))


def prompt_labels(wildcards, prompts, n_shown):
    """A reported prompt's figure labels: its number (zero-padded: the report sorts labels as text), then its
    text, shortened, as one label (the report turns a second label with two values into a toggle); the trait
    where the figure has one. prompts: every prompt's text by plan-wide id."""
    i = int(wildcards.prompt)
    labels = {"prompt": f"{prompt_number(i, n_shown)}: {report_label(prompts[i])}"}
    if "trait" in wildcards.keys():
        labels["trait"] = wildcards.trait
    return labels


def file_stems(path_of, folder, indices):
    """Each prompt's file stem under folder, as path_of(g) names its file: prompt_{i}, or {set}/prompt_{i}."""
    return [os.path.relpath(os.path.splitext(path_of(g))[0], folder) for g in indices]


def file_pattern(path, stem):
    """path (a file of the prompt whose stem is stem) as a pattern with '{file}' in the stem's place.

    The report scripts fill it in per prompt, so a job's params (its report details) hold one
    pattern, not one path per prompt."""
    ext = os.path.splitext(path)[1]
    if not path.endswith(f"{stem}{ext}"):
        raise ValueError(f"{path} does not end with {stem}{ext}")
    return f"{path[: len(path) - len(stem) - len(ext)]}{{file}}{ext}"


def plan_vectors(plan):
    """{trait: method, layer, position, extracted here?, metadata file}: the vector quality table's rows."""
    from ..experiment.vectors import EXTRACTED_METHODS, metadata_path

    return {t.name: {"method": t.method, "layer": t.layer, "position": t.position,
                     "extracted": t.extract and t.method in EXTRACTED_METHODS, "metadata": metadata_path(t.vector_path)}
            for t in plan.ok_traits}


def vector_metadata_files(plan):
    """Each trait's vector metadata file (extraction writes one; a vector brought in may come with one), and an
    extracted trait's probe's at every position and layer (the held-out accuracy table)."""
    from ..experiment.examples import position_folder
    from ..experiment.vectors import metadata_path, vector_filename

    files = []
    for t in plan.ok_traits:
        extracted, meta = plan_vectors(plan)[t.name]["extracted"], metadata_path(t.vector_path)
        files += [meta] if extracted or os.path.exists(meta) else []
        if extracted:
            base = os.path.dirname(t.vector_path).removesuffix("/" + position_folder(t.position))
            files += [metadata_path(os.path.join(base, position_folder(p), vector_filename("probe", layer)))
                      for p in t.positions for layer in range(plan.n_layers)]
    return list(dict.fromkeys(files))


def prompt_ids(plan, indices):
    """{prompt set: [index within it]} of plan-wide prompt ids (how the dynamics table names prompts)."""
    ids = {}
    for g in indices:
        ids.setdefault(plan.prompt_set(g), []).append(plan.prompt_index(g))
    return ids


def fmt(value):
    """A table cell: '' for missing, integers as integers, other numbers at 4 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    try:
        import pandas as pd

        if value is pd.NA:
            return ""
    except ImportError:
        pass
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    return show_token(str(value)) if value != "" else ""


_STYLE = """
body { font: 13px/1.4 system-ui, sans-serif; background: #fff; color: #111; margin: 12px; }
h1 { font-size: 17px; margin: 0 0 6px; } h2 { font-size: 15px; margin: 18px 0 6px; }
p { max-width: 70em; margin: 4px 0; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; vertical-align: top; }
th { background: #eee; text-align: left; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #f7f7f7; }
.note { color: #555; }
"""


def html_page(title, body):
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n{body}</body></html>\n")


def table_html(columns, rows, table_id=None):
    """An HTML table: columns are names, rows are lists of cells (numbers or text), every cell escaped."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            numeric = isinstance(cell, numbers.Number) and not isinstance(cell, bool)
            cells.append(f'<td class="num">{html.escape(fmt(cell))}</td>' if numeric
                         else f"<td>{html.escape(fmt(cell))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{html.escape(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>\n"


# ---- dynamics summary -------------------------------------------------------------------------

KEYS = ["trait", "method", "prompt_set", "prompt_index"]  # prompt_set: absent from tables written before sets
LONG_TEXT = ["prompt_text", "response_text"]  # shortened (the prompt) or left out (the response)


@reports_damage("CSV file")
def read_summary(path):
    """The dynamics summary CSV as written by traitflow.outputs.tables (tokens such as 'NA' stay text)."""
    import pandas as pd

    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def _is_numeric(series):
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def constant_columns(df, skip=()):
    """{column: value} for columns holding one value in every row (shown once, above the tables)."""
    out = {}
    for col in df.columns:
        if col in skip or col in KEYS:
            continue
        values = df[col].dropna().unique()
        if len(df) and len(values) == 1 and df[col].notna().all():
            out[col] = values[0]
    return out


def _is_index(df, col):
    """A token index column (indices count prompt + response tokens): summarised after the prompt."""
    return col.endswith("_index") and col not in KEYS and "n_prompt" in df.columns


def summary_by_trait(df, constants, skip=()):
    """(columns, rows): one row per (trait, method) over every prompt.

    Numeric columns (read from the CSV, whatever metrics it holds) give their median over
    the prompts; token indices are counted from the first response token first (prompts
    differ in length). Where some prompts have no value (no commitment point, say) the cell
    says how many have one; a column no prompt has a value for says so. Text columns appear
    only where one value holds for the whole group.
    """
    metrics = [c for c in df.columns if c not in KEYS and c not in LONG_TEXT and c not in constants and c not in skip]
    columns, rows = ["trait", "method", "prompts"], []
    empty = {c for c in metrics if df[c].isna().all()}
    numeric = {c: c not in empty and _is_numeric(df[c]) for c in metrics}
    groups = list(df.groupby(["trait", "method"], sort=True))
    shown = [c for c in metrics if numeric[c] or c in empty
             or all(g[c].nunique(dropna=False) == 1 for _, g in groups)]
    for c in shown:
        if not numeric[c]:
            columns.append(c)
        else:
            columns.append(f"median {c} - n_prompt" if _is_index(df, c) else f"median {c}")
    for (trait, method), g in groups:
        row = [trait, method, len(g)]
        for c in shown:
            if not numeric[c]:
                row.append(f"none of {len(g)}" if c in empty else g[c].iloc[0])
                continue
            values = (g[c] - g["n_prompt"]) if _is_index(df, c) else g[c]
            values = values.dropna()
            if values.empty:
                row.append(f"none of {len(g)}")
            elif len(values) < len(g):
                row.append(f"{fmt(float(values.median()))} ({len(values)} of {len(g)} have one)")
            else:
                row.append(float(values.median()))
        rows.append(row)
    return columns, rows


def _selected(df, prompts):
    """Rows of the given prompts: {prompt set: [index within it]}, or plain indices (the default set)."""
    if not isinstance(prompts, dict):
        prompts = {"default": list(prompts)}
    pairs = {(name, int(i)) for name, indices in prompts.items() for i in indices}
    sets = df["prompt_set"] if "prompt_set" in df.columns else ["default"] * len(df)
    return df[[(s, int(i)) in pairs for s, i in zip(sets, df["prompt_index"])]]


def summary_per_prompt(df, prompts, constants, width=50, prompt_columns=()):
    """(columns, rows): the CSV's rows for the given prompts, the prompt shortened, the response left out;
    the prompt's id, fields and labels (prompt_columns) right after its text."""
    part = _selected(df, prompts)
    with_set = "prompt_set" in df.columns and df["prompt_set"].nunique() > 1
    own = [c for c in prompt_columns if c in df.columns]
    rest = [c for c in df.columns if c not in KEYS and c not in LONG_TEXT and c not in constants and c not in own]
    columns = ["trait", "method"] + (["prompt set"] if with_set else []) + ["#", "prompt"] + own + rest
    rows = []
    for _, r in part.iterrows():
        text = short_text(r["prompt_text"], width) if "prompt_text" in df.columns else ""
        rows.append([r["trait"], r["method"]] + ([r["prompt_set"]] if with_set else [])
                    + [int(r["prompt_index"]), text] + [r[c] for c in own + rest])
    return columns, rows


def dynamics_summary_html(df, prompts, source, prompt_columns=()):
    """The report's dynamics page: settings, the per-(trait, method) medians, then the reported prompts' rows.

    prompts: {prompt set: [index within it]} (or indices of the default set) of the prompts with figures;
    prompt_columns: the prompts' id, field and label columns (shown per prompt, never as medians).
    """
    prompt_columns = list(prompt_columns)
    constants = constant_columns(df, skip=LONG_TEXT + prompt_columns)
    ids = [c for c in ("prompt_set", "prompt_index") if c in df.columns]
    n_prompts = len(df[ids].drop_duplicates()) if len(df) else 0
    parts = [f"<p>From <code>{html.escape(source)}</code> ({len(df)} rows: every trait, dynamics method and prompt; "
             "its Parquet twin beside it). Indices count prompt and response tokens from the first prompt token. "
             "Scores are projections onto each trait's own unit vector: compare a trait with itself (across "
             "prompts, methods and tokens), not the size of one trait's scores with another's.</p>"]
    if constants:
        parts.append("<p>Same for every row: " + ", ".join(
            f"{html.escape(k)} = <code>{html.escape(fmt(v))}</code>" for k, v in constants.items()) + ".</p>")
    columns, rows = summary_by_trait(df, constants, prompt_columns)
    parts.append(f"<h2>Per trait and method, over all {n_prompts} prompts (medians)</h2>")
    parts.append(table_html(columns, rows, "by-trait"))
    columns, rows = summary_per_prompt(df, prompts, constants, prompt_columns=prompt_columns) if len(df) else ([], [])
    if rows:
        shown = len(_selected(df, prompts)[ids].drop_duplicates())
        more = f"; the other {n_prompts - shown} are in the CSV" if n_prompts > shown else ""
        parts.append(f"<h2>Per prompt: the {shown} prompts with figures (report.max_prompts){more}</h2>")
        parts.append(table_html(columns, rows, "per-prompt"))
    else:
        parts.append('<p class="note">No per-prompt rows: report.max_prompts is 0 (every row is in the CSV).</p>')
    return html_page("Dynamics summary", "\n".join(parts))


# ---- vector quality ---------------------------------------------------------------------------

NOT_MEASURED = "not measured"
CHANCE_LIKE = 0.6  # held-out accuracy below this on two balanced classes: hardly better than a coin


def _accuracy(value, n=None, how=None):
    if value is None:
        return None
    detail = ", ".join(([str(how)] if how else []) + ([f"n={int(n)}"] if n is not None else []))
    return f"{float(value):.2f}" + (f" ({detail})" if detail else "")


def vector_quality_rows(vectors, metadata, hidden_size=None, model=None):
    """One dict per trait: method, layer, examples per side, train and held-out accuracy, notes.

    vectors: {trait: {"method", "layer", "extracted"}} (from the plan); metadata:
    {trait: the vector's *_metadata.json as a dict, or {} when there is none}.
    """
    rows = []
    for trait, v in vectors.items():
        meta = metadata.get(trait) or {}
        n_pos, n_neg = meta.get("n_positive"), meta.get("n_negative")
        examples = f"{n_pos} / {n_neg}" if n_pos is not None and n_neg is not None else None
        source = "extracted here from the trait's examples" if v.get("extracted") else "brought its own vector"
        notes = ["no examples: the vector came with the trait, so its quality is not measured here"
                 ] if examples is None and not v.get("extracted") else []
        train = meta.get("train_accuracy")
        train_cell = _accuracy(train) if train is not None else (
            "n/a (not a classifier)" if v["method"] == "mean_diff" and v.get("extracted") else NOT_MEASURED)
        heldout = _accuracy(meta.get("heldout_accuracy"), meta.get("heldout_n"), meta.get("heldout"))
        if heldout is None and "heldout_accuracy" in meta:
            heldout = f"{NOT_MEASURED} (too few examples to hold some out)"
        smallest = min(n_pos, n_neg) if examples else None
        if smallest is not None and smallest < FEW_EXAMPLES:
            notes.append(f"only {smallest} examples on one side: the vector is mostly noise")
        if train is not None and float(train) >= 0.99 and meta.get("heldout_accuracy") is None and (
                hidden_size is None or (n_pos or 0) + (n_neg or 0) <= hidden_size):
            notes.append("a probe fits this few examples perfectly whatever they say: train accuracy shows nothing "
                         "without a held-out one")
        if meta.get("heldout_accuracy") is not None and float(meta["heldout_accuracy"]) < CHANCE_LIKE:
            notes.append("held-out accuracy near chance (0.5): the vector barely tells the examples apart, so its "
                         "scores say little about the trait")
        if model and meta.get("model") and meta["model"] != model:
            notes.append(f"extracted from {meta['model']}, not {model}")
        source += f", read at {meta['position']} ({meta.get('presentation')} examples)" if meta.get("position") else ""
        rows.append({"trait": trait, "method": v["method"], "layer": v["layer"], "source": source,
                     "examples (positive / negative)": examples or "none",
                     "train accuracy": train_cell, "held-out accuracy": heldout or NOT_MEASURED,
                     "notes": "; ".join(notes)})
    return rows


def find_metadata(vectors, paths):
    """{trait: its vector's metadata (vectors[trait]["metadata"], where among paths), or {}}."""
    from ..experiment.vectors import read_metadata

    # read_metadata takes the vector's path (.pt or .safetensors: the metadata's name is the same)
    return {trait: read_metadata(v["metadata"][: -len("_metadata.json")] + ".pt") if v.get("metadata") in paths
            else {} for trait, v in vectors.items()}


def heldout_table(paths, vectors):
    """(columns, rows): the probe's held-out accuracy per (trait, position) row and layer column, from
    extraction's metadata files, with the best layer and the position and layer each trait projects."""
    from ..experiment.vectors import heldout_by_position

    table = heldout_by_position(paths)
    layers = sorted({layer for acc in table.values() for layer in acc})
    rows = []
    for (trait, position, presentation), acc in table.items():
        scored = {layer: a for layer, a in acc.items() if a is not None}
        best = max(scored, key=lambda layer: (scored[layer], -layer)) if scored else None
        used = vectors.get(trait)
        mark = f" (projected at L{used['layer']})" if used and (used["position"] or "all") == position else ""
        rows.append([trait, position + mark, presentation, f"L{best} ({scored[best]:.2f})" if scored else NOT_MEASURED]
                    + [acc.get(layer) for layer in layers])
    return ["trait", "position", "presentation", "best layer"] + [f"L{layer}" for layer in layers], rows


def vector_quality_html(rows, heldout=None):
    """The vector quality page: a row per trait, then (heldout: heldout_table) accuracy per position and layer."""
    columns = list(rows[0]) if rows else ["trait"]
    body = ["<p>How much to trust each trait's vector, from its metadata file "
            "(<code>extraction/vectors/{method}_layer{L}_metadata.json</code>). Held-out accuracy is the probe's "
            "accuracy on examples it was not trained on; train accuracy alone says little when there are fewer "
            "examples than the model has dimensions.</p>",
            table_html(columns, [[r[c] for c in columns] for r in rows], "vector-quality")]
    if heldout and heldout[1]:
        body += ["<h2>Held-out accuracy per position and layer</h2>",
                 "<p>The probe's 5-fold cross-validated accuracy on the trait's examples read at each position "
                 "(<code>vector.position</code>) and layer: on a chat model, where a vector is read decides all.</p>",
                 table_html(*heldout, "heldout-by-layer")]
    return html_page("Vector quality per trait", "\n".join(body))


def write_text(path, text):
    from ..core.formats import atomic_write

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
    atomic_write(path, write)

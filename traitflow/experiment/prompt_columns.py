"""A prompt's id, extra fields and labels as table columns (projections, dynamics and report tables).

A prompt record (traitflow.experiment.prompts) may carry an id, extra fields ("note", ...) and
labels ({"refusal": true}). In every per-prompt table they become the columns

    prompt_id        the prompt's id (int64 when every id is an integer, else string)
    {field}          one column per extra field, in the order the fields first appear; a field
                     named like a table column (category, score, ...) or starting with
                     label_, proj_L or cos_L becomes prompt_{field} (prompt_category)
    label_{name}     one boolean column per label name, in the order the names first appear

present only where some prompt of the experiment has them (null for a prompt without
one). A column whose values mix kinds is text: ints and floats become float; anything
else non-text (a list, an object, a mix) is written as its JSON text.

Plan-time: these columns reach the table jobs through params (prompt_columns), so editing
a note or a label reruns the tables and the overview, never generation or capture.
"""

import json

from ..core.errors import TraitflowError

# Columns the tables already have: a field with one of these names gets the column prompt_{name}.
TABLE_COLUMNS = frozenset({
    "trait", "category", "method", "prompt_set", "prompt_index", "prompt_id", "token_index", "token", "token_id",
    "segment", "score", "velocity", "acceleration", "prompt_text", "response_text", "n_prompt", "n_response",
    "layer", "point", "span", "peak_index", "peak_token", "peak_score", "peak_velocity", "peak_velocity_index",
    "mean_abs_velocity", "commitment_index", "commitment_token", "commitment_score_threshold",
    "persistence_count", "persistence_longest_run", "persistence_threshold"})
RESERVED_PREFIXES = ("proj_L", "cos_L", "label_")  # value columns, and what labels become

ARROW_TYPES = {"bool": "bool_", "int": "int64", "float": "float64", "string": "string"}
PANDAS_DTYPES = {"bool": "boolean", "int": "Int64", "float": "float64", "string": object}


def column_name(field):
    """A field's column: its own name, or prompt_{name} where that would collide with a table's column."""
    return f"prompt_{field}" if field in TABLE_COLUMNS or field.startswith(RESERVED_PREFIXES) else field


def check_field_names(record, at):
    """Refuse two fields of one prompt that would share a column (category and prompt_category)."""
    seen = {}
    for name in record.get("fields", {}):
        column = column_name(name)
        if column in seen:
            raise TraitflowError(at, f"fields \"{seen[column]}\" and \"{name}\" would both be the column {column}",
                                 "rename one of them")
        seen[column] = name


def prompt_meta(record):
    """What a prompt carries besides its text (an empty dict for a plain .txt prompt)."""
    return {k: record[k] for k in ("id", "fields", "labels") if k in record}


def prompt_columns(metas):
    """{column: [value per prompt]} from prompt_meta() of every prompt (ordered; only columns some prompt has).

    Values are normalised (see the module docstring), so each column has one kind:
    column_kind() names it, and a Parquet writer or pandas gets a consistent type.
    """
    names, labels = {}, {}
    for m in metas:
        names.update(dict.fromkeys(m.get("fields", {})))
        labels.update(dict.fromkeys(m.get("labels", {})))
    columns = {}
    if any("id" in m for m in metas):
        columns["prompt_id"] = [m.get("id") for m in metas]
    for name in names:
        columns[column_name(name)] = [m.get("fields", {}).get(name) for m in metas]
    for name in labels:
        columns[f"label_{name}"] = [m.get("labels", {}).get(name) for m in metas]
    return {name: _normalise(values) for name, values in columns.items()}


def column_kind(values):
    """bool, int, float or string: the one kind of a normalised column's non-null values."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "bool"
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "int"
    if present and all(isinstance(v, float) for v in present):
        return "float"
    return "string"


def _normalise(values):
    present = [v for v in values if v is not None]
    if all(isinstance(v, bool) for v in present) or all(isinstance(v, str) for v in present):
        return list(values)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        ints = all(isinstance(v, int) for v in present)
        return [v if v is None or ints else float(v) for v in values]
    return [v if v is None or isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in values]


def select(columns, positions):
    """The columns' values at the given prompt positions (plan-wide ids), same order."""
    return {name: [values[g] for g in positions] for name, values in columns.items()}


def arrow_columns(columns, repeats):
    """{name: pyarrow array} with each prompt's value repeated once per row of that prompt."""
    import pyarrow as pa

    out = {}
    for name, values in columns.items():
        kind = column_kind(values)
        out[name] = pa.array([v for v, n in zip(values, repeats) for _ in range(n)],
                             type=getattr(pa, ARROW_TYPES[kind])())
    return out


def add_to_frame(df, columns, keys, after="prompt_index"):
    """df with the prompt columns joined on keys ([(prompt_set, prompt_index)] per prompt), placed after `after`."""
    import pandas as pd

    if not columns:
        return df
    index = {tuple(k): n for n, k in enumerate(keys)}
    rows = [index.get((s, int(i))) for s, i in zip(df["prompt_set"], df["prompt_index"])]
    at = list(df.columns).index(after) + 1
    df = df.copy()
    for offset, (name, values) in enumerate(columns.items()):
        data = [None if r is None else values[r] for r in rows]
        df.insert(at + offset, name, pd.array(data, dtype=PANDAS_DTYPES[column_kind(values)]))
    return df

"""Experiment tables: the dynamics JSON of every (trait, prompt) as two tidy pandas frames.

dynamics_tokens: one row per (trait, method, prompt, token), with the token's
score and its backward velocity / acceleration (see traitflow.outputs.dynamics; NaN
where undefined). dynamics_summary: one row per (trait, method, prompt) with
the metrics. Indices count prompt + response tokens from the first prompt token.
Both carry the prompts' ids, extra fields and labels as columns after prompt_index
(prompt_id, {field}, label_{name}: traitflow.experiment.prompt_columns) where the prompts have them.
"""

import csv

import numpy as np
import pandas as pd

from ..core.formats import load_json


def _category(trait):
    """CATEGORY of a CATEGORY/TRAIT name, None for a trait directly under the experiment."""
    return trait.split("/")[0] if "/" in trait else None


def _backward(diffs, lag, n):
    """Difference arrays aligned to the token they arrive at: NaN for the first lag tokens."""
    return np.concatenate([np.full(min(lag, n), np.nan), np.asarray(diffs, dtype=np.float64)])


def token_rows(rec):
    n, n_prompt = len(rec["tokens"]), rec["n_prompt"]
    frames = []
    for method, scores in rec["scores"].items():
        dyn = rec["dynamics"][method]
        frames.append(pd.DataFrame({
            "trait": rec["trait"], "category": _category(rec["trait"]), "method": method,
            "prompt_set": rec.get("prompt_set", "default"), "prompt_index": rec["prompt_index"],
            "token_index": np.arange(n), "token": rec["tokens"],
            "segment": np.where(np.arange(n) < n_prompt, "prompt", "response"),
            "score": np.asarray(scores, dtype=np.float64),
            "velocity": _backward(dyn["velocity"], 1, n),
            "acceleration": _backward(dyn["acceleration"], 2, n),
        }))
    return frames


def summary_rows(rec):
    rows = []
    for method, dyn in rec["dynamics"].items():
        peak, commit, persist = dyn["peak"] or {}, dyn["commitment_point"] or {}, dyn["persistence"]
        rows.append({
            "trait": rec["trait"], "category": _category(rec["trait"]), "method": method,
            "prompt_set": rec.get("prompt_set", "default"), "prompt_index": rec["prompt_index"],
            "prompt_text": rec["prompt_text"], "response_text": rec["response_text"],
            "n_prompt": rec["n_prompt"], "n_response": rec["n_response"],
            "layer": rec["layer"], "point": rec["point"], "span": rec["span"],
            "peak_index": peak.get("index"), "peak_token": rec["tokens"][peak["index"]] if peak else None,
            "peak_score": peak.get("score"),
            "peak_velocity": dyn["peak_velocity"], "peak_velocity_index": dyn["peak_velocity_index"],
            "mean_abs_velocity": dyn["mean_abs_velocity"],
            "commitment_index": commit.get("index"), "commitment_token": commit.get("token"),
            "commitment_score_threshold": dyn.get("commitment_score_threshold"),
            "persistence_count": persist["count"], "persistence_longest_run": persist["longest_run"],
            "persistence_threshold": persist["threshold"],
        })
    return rows


_NULLABLE_INTS = ["peak_index", "peak_velocity_index", "commitment_index"]


def dynamics_tables(paths, prompt_refs=(), prompt_columns=None):
    """(tokens, summary) DataFrames from dynamics JSON files, sorted by trait, method, prompt, token.

    prompt_refs: [(prompt set, index)] per plan-wide prompt; prompt_columns: {column: [value per
    plan-wide prompt]}, joined onto both frames by (prompt_set, prompt_index).
    """
    from ..experiment.prompt_columns import add_to_frame

    records = []
    for path in paths:
        records.append(load_json(path))  # a damaged file: one line naming it and the command that rebuilds it
    tokens = pd.concat([f for rec in records for f in token_rows(rec)], ignore_index=True)
    summary = pd.DataFrame([row for rec in records for row in summary_rows(rec)])
    for col in _NULLABLE_INTS:
        summary[col] = summary[col].astype("Int64")  # null stays null, not a float NaN
    keys = ["trait", "method", "prompt_set", "prompt_index"]
    tokens = tokens.sort_values(keys + ["token_index"], kind="stable", ignore_index=True)
    summary = summary.sort_values(keys, kind="stable", ignore_index=True)
    refs = [tuple(r) for r in prompt_refs]
    return add_to_frame(tokens, prompt_columns or {}, refs), add_to_frame(summary, prompt_columns or {}, refs)


def save_table(df, csv_path, parquet_path):
    """CSV quotes every text field: tokens can be a lone carriage return or newline."""
    from ..core.formats import atomic_write

    atomic_write(csv_path, lambda tmp: df.to_csv(tmp, index=False, quoting=csv.QUOTE_NONNUMERIC))
    atomic_write(parquet_path, lambda tmp: df.to_parquet(tmp, index=False))

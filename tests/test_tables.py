"""The experiment tables: one row per (trait, method, prompt, token) and per (trait, method, prompt), equal to the JSON."""

import glob
import json
import os

import numpy as np
import pandas as pd
import pytest

TABLES = "experiments/demo/tables"


@pytest.fixture(scope="module")
def records(demo_run):
    paths = glob.glob(os.path.join(demo_run["dir"], "experiments/demo/*/inference/dynamics/prompt_*.json"))
    out = {}
    for path in paths:
        with open(path) as fh:
            rec = json.load(fh)
        out[(rec["trait"], rec["prompt_index"])] = rec
    return out


def table(demo_run, name, ext):
    path = os.path.join(demo_run["dir"], TABLES, f"{name}.{ext}")
    return pd.read_parquet(path) if ext == "parquet" else pd.read_csv(path, keep_default_na=False, na_values=[""])


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_tokens_table_has_one_row_per_trait_method_prompt_token_and_matches_the_json(demo_run, records, ext):
    df = table(demo_run, "dynamics_tokens", ext)
    keys = ["trait", "method", "prompt_index", "token_index"]
    assert not df.duplicated(keys).any()
    assert len(df) == sum(len(rec["scores"]) * len(rec["tokens"]) for rec in records.values())
    for (trait, method, prompt), rows in df.groupby(["trait", "method", "prompt_index"]):
        rec = records[(trait, prompt)]
        s = np.asarray(rec["scores"][method])
        assert rows["token_index"].tolist() == list(range(len(s)))
        assert rows["token"].tolist() == rec["tokens"]
        np.testing.assert_allclose(rows["score"], s, atol=1e-9)
        # per token: the change it brought, and the change of that change (backward differences)
        vel = np.r_[np.nan, s[1:] - s[:-1]]
        acc = np.r_[np.nan, np.nan, s[2:] - 2 * s[1:-1] + s[:-2]][:len(s)]
        np.testing.assert_allclose(rows["velocity"], vel, atol=2e-6)
        np.testing.assert_allclose(rows["acceleration"], acc, atol=4e-6)
        segment = ["prompt"] * rec["n_prompt"] + ["response"] * rec["n_response"]
        assert rows["segment"].tolist() == segment


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_summary_table_has_one_row_per_trait_method_prompt_with_the_json_metrics(demo_run, records, ext):
    df = table(demo_run, "dynamics_summary", ext)
    assert not df.duplicated(["trait", "method", "prompt_index"]).any()
    assert len(df) == sum(len(rec["dynamics"]) for rec in records.values())
    for row in df.itertuples():
        rec = records[(row.trait, row.prompt_index)]
        dyn = rec["dynamics"][row.method]
        assert row.peak_index == dyn["peak"]["index"] and row.peak_token == rec["tokens"][row.peak_index]
        assert row.peak_score == pytest.approx(dyn["peak"]["score"])
        assert row.peak_velocity == pytest.approx(dyn["peak_velocity"])
        assert row.mean_abs_velocity == pytest.approx(dyn["mean_abs_velocity"])
        assert (row.persistence_count, row.persistence_longest_run) == (
            dyn["persistence"]["count"], dyn["persistence"]["longest_run"])
        commit = dyn["commitment_point"]
        assert pd.isna(row.commitment_index) if commit is None else row.commitment_index == commit["index"]
        assert row.prompt_text == rec["prompt_text"]


def test_null_commitments_and_odd_tokens_survive_csv_and_parquet(tmp_path):
    from traitflow.outputs.dynamics import dynamics_record
    from traitflow.core.formats import save_json
    from traitflow.outputs.tables import dynamics_tables, save_table

    response = {"prompt_index": 0,
                "prompt": {"text": "p", "tokens": ["<bos>", "a"], "token_ids": [1, 2], "n_tokens": 2},
                "response": {"text": "r", "tokens": ["c", "\r", "NA", "a,\"b\"\n"], "token_ids": [3, 4, 5, 6], "n_tokens": 4}}
    scores = {"probe": [9.0, 0.0, 1.0, 2.0, 3.0, 4.0],  # a straight line over the response: committed at its start
              "mean_diff": [0.0, 0.0, 1.0, 0.0, 1.0, 0.0]}  # zigzag: never committed
    rec = dynamics_record("t", response, 1, "residual_out", "response", scores,
                          {"commitment_threshold": 0.5, "persistence_fraction": 0.5}, {})
    save_json(rec, str(tmp_path / "prompt_0.json"))
    tokens, summary = dynamics_tables([str(tmp_path / "prompt_0.json")])
    save_table(summary, str(tmp_path / "s.csv"), str(tmp_path / "s.parquet"))
    for df in (summary, pd.read_csv(tmp_path / "s.csv"), pd.read_parquet(tmp_path / "s.parquet")):
        by_method = df.set_index("method")
        assert by_method.loc["probe", "commitment_index"] == 2 and by_method.loc["probe", "commitment_token"] == "c"
        assert pd.isna(by_method.loc["mean_diff", "commitment_index"])
    assert len(tokens) == 12 and tokens.loc[tokens["token_index"] < 2, "segment"].eq("prompt").all()
    save_table(tokens, str(tmp_path / "t.csv"), str(tmp_path / "t.parquet"))
    for df in (pd.read_csv(tmp_path / "t.csv", keep_default_na=False, na_values=[""]),
               pd.read_parquet(tmp_path / "t.parquet")):
        assert df["token"].tolist() == tokens["token"].tolist() == 2 * rec["tokens"]
        np.testing.assert_allclose(df["velocity"], tokens["velocity"])

"""The projections table against an independent numpy computation, its partition layout, and the README's queries."""

import glob
import os
import re
import shutil
import time
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import torch

from conftest import date_back, snakemake
from traitflow import SUBLAYERS
from traitflow.core.errors import TraitflowError
from traitflow.outputs.projections_table import build_partition, build_table, partition_path, value_columns
from traitflow.core.shared import write_shared

L, D = 3, 8
TRAITS = ["refusal", "style/sycophancy"]  # a CATEGORY/TRAIT name too
# prompt index -> (n_prompt, n_response); prompt 1 has a zero residual at one token (cosine 0 there)
PROMPTS = {0: (4, 5), 1: (3, 7), 2: (5, 1)}


# --- a synthetic experiment: residuals and vectors first, files written the way the capture writes them --

def residuals(seed, n_tokens):
    h = np.random.default_rng(seed).normal(size=(n_tokens, L, 3, D)) * np.array([1.0, 10.0, 100.0])[None, :, None, None]
    if seed == 1:
        h[2, 1, 0] = 0.0
    return h


def vectors():
    rng = np.random.default_rng(99)
    return {t: rng.normal(size=D) * (k + 1) for k, t in enumerate(TRAITS)}


def fake_experiment(root):
    """Per-trait .pt and shared .safetensors files (docs/formats.md) for TRAITS x PROMPTS, and the truth."""
    exp = os.path.join(root, "experiments/x")
    truth = {}
    for i, (n_prompt, n_response) in PROMPTS.items():
        n = n_prompt + n_response
        h = residuals(i, n)
        ids = list(range(100 + i, 100 + i + n))
        tokens = [f"<p{i}t{t}>" if t < n_prompt else f" r{i},\"{t}\"\n" for t in range(n)]
        norms = np.linalg.norm(h, axis=-1).astype(np.float32)
        write_shared(os.path.join(exp, f"inference/shared/prompt_{i}.safetensors"), ids, n_prompt, norms)
        for trait, v in vectors().items():
            proj = (h @ v / np.linalg.norm(v)).astype(np.float32)  # what the capture stores
            rec = {"prompt": {"text": f"p{i}", "tokens": tokens[:n_prompt], "token_ids": ids[:n_prompt],
                              "n_tokens": n_prompt},
                   "response": {"text": f"r{i}", "tokens": tokens[n_prompt:], "token_ids": ids[n_prompt:],
                                "n_tokens": n_response},
                   "projections": {"prompt": torch.from_numpy(proj[:n_prompt]),
                                   "response": torch.from_numpy(proj[n_prompt:])},
                   "metadata": {"trait": trait, "n_layers": L, "sublayers": list(SUBLAYERS),
                                "shared_file": None}}
            path = os.path.join(exp, f"{trait}/inference/residual_stream_activations/prompt_{i}.pt")
            rec["metadata"]["shared_file"] = os.path.relpath(f"{exp}/inference/shared/prompt_{i}.safetensors",
                                                             os.path.dirname(path))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            torch.save(rec, path)
            # the independent computation: float64, cosine from the vectors themselves
            dots = h @ v
            cos = np.divide(dots, np.linalg.norm(h, axis=-1) * np.linalg.norm(v), out=np.zeros_like(dots),
                            where=np.linalg.norm(h, axis=-1) > 0)
            truth[(trait, i)] = {"proj": dots / np.linalg.norm(v), "cos": cos, "tokens": tokens, "ids": ids,
                                 "n_prompt": n_prompt}
    return exp, truth


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("projections"))
    exp, truth = fake_experiment(root)
    table_dir = os.path.join(exp, "tables/projections")
    for trait in TRAITS:
        captures = [("default", i, f"{exp}/{trait}/inference/residual_stream_activations/prompt_{i}.pt") for i in (2, 0, 1)]
        build_partition(captures, partition_path(table_dir, trait))
    return {"dir": table_dir, "truth": truth, "exp": exp}


def expected_rows(truth):
    """The table as the issue defines it, one row per (trait, prompt, token), built with plain loops."""
    rows = []
    for (trait, i), t in sorted(truth.items()):
        for k, token in enumerate(t["tokens"]):
            row = {"trait": trait, "prompt_set": "default", "prompt_index": i, "token_index": k, "token": token, "token_id": t["ids"][k],
                   "segment": "prompt" if k < t["n_prompt"] else "response"}
            for l in range(L):
                for p, point in enumerate(SUBLAYERS):
                    row[f"proj_L{l}_{point}"] = t["proj"][k, l, p]
                    row[f"cos_L{l}_{point}"] = t["cos"][k, l, p]
            rows.append(row)
    return pd.DataFrame(rows)


# --- values and layout ---------------------------------------------------------------------------

def test_values_equal_an_independent_computation(table):
    df = pd.read_parquet(table["dir"])
    want = expected_rows(table["truth"])
    df = df.sort_values(["trait", "prompt_index", "token_index"], ignore_index=True)
    assert list(df.columns) == (["category", "prompt_set", "prompt_index", "token_index", "token", "token_id", "segment"]
                                + value_columns("proj", L) + value_columns("cos", L) + ["trait"])
    assert len(df) == len(want) == len(TRAITS) * sum(a + b for a, b in PROMPTS.values())
    for col in ["trait", "prompt_set", "prompt_index", "token_index", "token", "token_id", "segment"]:
        assert df[col].astype(object).tolist() == want[col].tolist(), col
    for col in value_columns("proj", L) + value_columns("cos", L):
        assert df[col].dtype == np.float32, col
        np.testing.assert_allclose(df[col], want[col], rtol=2e-5, atol=1e-6, err_msg=col)
    assert (df["cos_L1_residual_in"].abs() <= 1 + 1e-6).all()
    zero = df[(df.prompt_index == 1) & (df.token_index == 2)]
    assert (zero["cos_L1_residual_in"] == 0).all()  # a zero residual has cosine 0, not NaN


def test_one_partition_per_trait_in_hive_layout(table):
    files = sorted(os.path.relpath(p, table["dir"]) for p in glob.glob(f"{table['dir']}/**", recursive=True)
                   if os.path.isfile(p))
    assert files == ["trait=refusal/part-0.parquet", "trait=style%2Fsycophancy/part-0.parquet"]
    for trait in TRAITS:
        f = pq.ParquetFile(partition_path(table["dir"], trait))
        assert "trait" not in f.schema_arrow.names  # the folder name carries it
        assert f.metadata.row_group(0).column(10).compression == "ZSTD"
        part = f.read().to_pandas()
        assert part["prompt_index"].tolist() == sorted(part["prompt_index"])  # rows sorted by prompt, token
        assert (part.groupby("prompt_index")["token_index"].diff().dropna() == 1).all()


def test_pyarrow_dataset_reads_it_in_one_call(table):
    t = ds.dataset(table["dir"], format="parquet", partitioning="hive").to_table()
    assert t.num_rows == 2 * sum(a + b for a, b in PROMPTS.values())
    assert sorted(set(t.column("trait").to_pylist())) == TRAITS
    one = ds.dataset(table["dir"], partitioning="hive").to_table(filter=ds.field("trait") == "style/sycophancy")
    assert set(one.column("trait").to_pylist()) == {"style/sycophancy"}


def test_a_rebuilt_partition_leaves_the_others_untouched(table, tmp_path):
    table_dir = str(tmp_path / "projections")
    shutil.copytree(table["dir"], table_dir)
    before = {t: os.stat(partition_path(table_dir, t)).st_mtime_ns for t in TRAITS}
    time.sleep(0.01)
    exp = table["exp"]
    build_partition([("default", 0, f"{exp}/style/sycophancy/inference/residual_stream_activations/prompt_0.pt")],
                    partition_path(table_dir, "style/sycophancy"))
    assert os.stat(partition_path(table_dir, "refusal")).st_mtime_ns == before["refusal"]
    df = pd.read_parquet(table_dir)
    assert sorted(df[df.trait == "style/sycophancy"].prompt_index.unique()) == [0]
    assert len(df[df.trait == "refusal"]) == sum(a + b for a, b in PROMPTS.values())
    assert not [p for p in os.listdir(os.path.dirname(partition_path(table_dir, "style/sycophancy")))
                if p.endswith(".tmp")]


def test_stale_tokens_are_a_clear_error(table, tmp_path):
    exp = table["exp"]
    rec = torch.load(f"{exp}/refusal/inference/residual_stream_activations/prompt_0.pt", weights_only=True)
    rec["response"]["token_ids"] = [7] * len(rec["response"]["token_ids"])
    path = f"{exp}/refusal/inference/residual_stream_activations/stale.pt"
    torch.save(rec, path)
    with pytest.raises(TraitflowError, match="tokens differ from its shared file"):
        build_partition([("default", 0, path)], str(tmp_path / "t.parquet"))
    os.unlink(path)


def test_build_table_checks_shapes():
    p = {"prompt_set": "default", "prompt_index": 0, "tokens": ["a", "b"], "token_ids": [1, 2], "n_prompt": 1,
         "projections": np.zeros((2, 4, 3)), "norms": np.ones((2, 3, 3))}
    with pytest.raises(TraitflowError, match="do not match"):
        build_table([p])


# --- the README's queries, checked against loops over the truth -----------------------------------

def test_readme_query_mean_response_score_per_trait_and_layer(table):
    df = pd.read_parquet(table["dir"])
    resp = df[df.segment == "response"]
    got = resp.filter(regex=r"^proj_L\d+_residual_out$").groupby(resp.trait, observed=True).mean()
    for trait in TRAITS:
        for l in range(L):
            scores = [t["proj"][k, l, 2] for (tr, _), t in sorted(table["truth"].items()) if tr == trait
                      for k in range(t["n_prompt"], len(t["tokens"]))]
            assert got.loc[trait, f"proj_L{l}_residual_out"] == pytest.approx(np.mean(scores), rel=1e-5)


def test_readme_query_prompts_that_move_a_trait_most(table):
    df = pd.read_parquet(table["dir"])
    resp = df[df.segment == "response"]
    got = (resp.groupby(["trait", "prompt_index"], observed=True)["proj_L2_residual_out"].mean()
           .groupby("trait", group_keys=False, observed=True).nlargest(2))
    for trait in TRAITS:
        means = {i: np.mean(t["proj"][t["n_prompt"]:, 2, 2]) for (tr, i), t in table["truth"].items() if tr == trait}
        top = sorted(means, key=means.get, reverse=True)[:2]
        assert got.loc[trait].index.tolist() == top
        np.testing.assert_allclose(got.loc[trait].to_numpy(), [means[i] for i in top], rtol=1e-5)


def test_readme_query_trait_by_trait_correlation_over_response_tokens(table):
    df = pd.read_parquet(table["dir"])
    resp = df[df.segment == "response"]
    got = resp.pivot_table(index=["prompt_index", "token_index"], columns="trait", values="proj_L2_residual_out",
                           observed=True).corr()
    series = {trait: np.concatenate([t["proj"][t["n_prompt"]:, 2, 2] for (tr, _), t in sorted(table["truth"].items())
                                     if tr == trait]) for trait in TRAITS}
    want = np.corrcoef(series["refusal"], series["style/sycophancy"])[0, 1]
    assert got.loc["refusal", "style/sycophancy"] == pytest.approx(want, rel=1e-5)
    assert got.loc["refusal", "refusal"] == pytest.approx(1.0)


def test_readme_queries_in_duckdb(table):
    duckdb = pytest.importorskip("duckdb")
    src = f"read_parquet('{table['dir']}/**/*.parquet', hive_partitioning = true)"
    con = duckdb.connect()
    df = pd.read_parquet(table["dir"])
    resp = df[df.segment == "response"]
    q1 = con.sql(f"SELECT trait, AVG(COLUMNS('proj_L\\d+_residual_out')) FROM {src} "
                 "WHERE segment = 'response' GROUP BY trait ORDER BY trait").df().set_index("trait")
    want1 = resp.filter(regex=r"^proj_L\d+_residual_out$").groupby(resp.trait, observed=True).mean()
    np.testing.assert_allclose(q1.to_numpy(), want1.loc[q1.index].to_numpy(), rtol=1e-5)
    q2 = con.sql(f"SELECT trait, prompt_index, AVG(proj_L2_residual_out) AS score FROM {src} "
                 "WHERE segment = 'response' GROUP BY trait, prompt_index "
                 "QUALIFY row_number() OVER (PARTITION BY trait ORDER BY score DESC) <= 2 "
                 "ORDER BY trait, score DESC").df()
    want2 = (resp.groupby(["trait", "prompt_index"], observed=True)["proj_L2_residual_out"].mean()
             .groupby("trait", group_keys=False, observed=True).nlargest(2))
    assert list(zip(q2.trait, q2.prompt_index)) == [(str(t), int(i)) for t, i in want2.index]
    q3 = con.sql(f"WITH r AS (SELECT trait, prompt_index, token_index, proj_L2_residual_out AS s FROM {src} "
                 "WHERE segment = 'response') SELECT a.trait, b.trait AS other, corr(a.s, b.s) AS r "
                 "FROM r a JOIN r b USING (prompt_index, token_index) GROUP BY ALL ORDER BY ALL").df()
    want3 = resp.pivot_table(index=["prompt_index", "token_index"], columns="trait", values="proj_L2_residual_out",
                             observed=True).corr()
    for row in q3.itertuples():
        assert row.r == pytest.approx(want3.loc[row.trait, row.other], rel=1e-5)


# --- the workflow's table (rules/projections_table.smk) -------------------------------------------

DEMO = "experiments/demo"
DEMO_TRAITS = ["refusal", "sycophancy", "uncertainty"]


def parts_scheduled(workdir):
    """(traits whose part a dry run schedules, every rule it schedules)."""
    out = snakemake(workdir, "-n", "--quiet", "host").stdout
    jobs = []
    for line in out.splitlines():
        if m := re.match(r"(?:local)?rule (\S+):$", line):
            jobs.append([m[1], None])
        elif (m := re.match(r"    wildcards: .*(?:trait|part)=([^,\s]+)", line)) and jobs:
            jobs[-1][1] = unquote(m[1])  # the table's {part} is the URI-encoded trait
    return sorted(t for r, t in jobs if r == "projections_table"), sorted(r for r, _ in jobs)


def test_demo_table_equals_the_captures(demo_run):
    from traitflow.core.formats import load_capture

    table_dir = os.path.join(demo_run["dir"], DEMO, "tables/projections")
    df = pd.read_parquet(table_dir)
    assert sorted(df.trait.unique()) == DEMO_TRAITS
    for trait in DEMO_TRAITS:
        part = df[df.trait == trait]
        for i in range(10):
            cap = load_capture(os.path.join(demo_run["dir"], DEMO, trait,
                                            f"inference/residual_stream_activations/prompt_{i}.pt"))
            rows = part[part.prompt_index == i].sort_values("token_index")
            assert rows.token.tolist() == cap["tokens"] and rows.token_id.tolist() == cap["token_ids"]
            assert (rows.segment == "response").tolist() == [k >= cap["n_prompt"] for k in range(len(cap["tokens"]))]
            n_layers = cap["projections"].shape[1]
            np.testing.assert_array_equal(rows[value_columns("proj", n_layers)].to_numpy(),
                                          cap["projections"].reshape(len(rows), -1))
            # a zero residual (the demo's random model can emit the pad token, whose embedding is 0) has cosine 0
            proj, norms = cap["projections"].astype(np.float64), cap["norms"].astype(np.float64)
            want_cos = np.divide(proj, norms, out=np.zeros_like(proj), where=norms > 0)
            np.testing.assert_allclose(rows[value_columns("cos", n_layers)].to_numpy(),
                                       want_cos.reshape(len(rows), -1), rtol=1e-6, atol=1e-7)


def test_a_changed_vector_rebuilds_only_its_traits_part(demo_copy):
    path = os.path.join(demo_copy, DEMO, "sycophancy/extraction/vectors/probe_layer2.pt")
    date_back(demo_copy)
    torch.save(-torch.load(path, weights_only=True), path)
    parts, rules = parts_scheduled(demo_copy)
    assert parts == ["sycophancy"]
    assert "generate_shard0" not in rules


def test_a_deleted_part_is_rebuilt_even_while_the_capture_reruns(demo_copy):
    shutil.rmtree(os.path.join(demo_copy, DEMO, "tables/projections/trait=refusal"))
    assert parts_scheduled(demo_copy)[0] == ["refusal"]
    path = os.path.join(demo_copy, DEMO, "uncertainty/extraction/vectors/probe_layer2.pt")
    date_back(demo_copy)
    torch.save(-torch.load(path, weights_only=True), path)
    assert parts_scheduled(demo_copy)[0] == ["refusal", "uncertainty"]


def test_an_edited_prompt_rebuilds_every_part(demo_copy):
    from demo_prompts import set_prompt_text

    set_prompt_text(demo_copy, 1, "What is the capital of Italy?")
    assert parts_scheduled(demo_copy)[0] == DEMO_TRAITS

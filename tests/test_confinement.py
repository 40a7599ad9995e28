"""Destructive commands stay inside one experiment's outputs: `make clean`, `make verify FIX=1`, orphan removal,
the manifest listing and the seed export, run in a copy of the repository (its files as git lists them, the
built demo, a fake .venv and a second experiment) whose every other byte is checked unchanged afterwards."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

VENV = os.path.dirname(os.path.dirname(sys.executable))  # make runs this environment's python, installs nothing
PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"
OTHER = {"experiments/other/inference_prompts.txt": b"hello\n",
         "experiments/other/inference/responses/prompt_0.json": b'{"response": 1}',
         "experiments/other/viewer/index.json": b"{}",
         "logs/other/generate.log": b"ran\n",
         "manifests/other/_shared/generate_shard0.json": json.dumps(
             {"version": 2, "rule": "generate_shard0", "wildcards": {},
              "files": [{"path": "experiments/other/inference/responses/prompt_0.json", "bytes": 15,
                         "sha256": None}]}).encode(),
         ".venv/pyvenv.cfg": b"home = /usr/bin\n", ".venv/bin/python": b"#!/bin/sh\n",
         ".venv/lib/site.py": b"# site\n"}


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


def copy_repo(demo_run, root):
    """The repository's files (tracked, and new ones git does not ignore), the built demo over them, a fake
    .venv and a second experiment with outputs and a manifest; git tracks what the repository would."""
    names = subprocess.run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, names):
        if os.path.isfile(os.path.join(REPO, name)):
            os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
            shutil.copy2(os.path.join(REPO, name), os.path.join(root, name))
    for name in ("experiments/demo", "logs", "manifests"):  # what the run wrote, its config.yaml too
        shutil.copytree(os.path.join(demo_run["dir"], name), os.path.join(root, name), symlinks=True,
                        dirs_exist_ok=True)
    for rel, data in OTHER.items():
        write(os.path.join(root, rel), data)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    return root


@pytest.fixture
def repo(demo_run, tmp_path):
    return copy_repo(demo_run, str(tmp_path / "repo"))


@pytest.fixture(scope="module")
def untouched(demo_run, tmp_path_factory):
    """One copy for the commands that must change nothing: each test checks that they did not."""
    return copy_repo(demo_run, str(tmp_path_factory.mktemp("untouched") / "repo"))


def tracked(root):
    return subprocess.run(["git", "ls-files", "-z"], cwd=root, check=True, capture_output=True).stdout.decode() \
        .strip("\0").split("\0")


def snapshot(root, skip=()):
    """{path: sha256, or the target of a symlink} of every file under root but those under the skip folders."""
    found = {}
    for folder, dirs, files in os.walk(root):
        rel_folder = os.path.relpath(folder, root)
        dirs[:] = [d for d in dirs if os.path.normpath(os.path.join(rel_folder, d)) not in skip and d != ".git"]
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = os.path.join(folder, name)
            rel = os.path.normpath(os.path.join(rel_folder, name))
            if os.path.islink(path):
                found[rel] = "-> " + os.readlink(path)
            else:
                with open(path, "rb") as fh:
                    found[rel] = hashlib.sha256(fh.read()).hexdigest()
    return found


def make(root, *args):
    return subprocess.run(["make", "-s", "-C", root, f"VENV={VENV}", "-o", f"{VENV}/.installed", *args],
                          text=True, capture_output=True, timeout=300)


def own_lines(stderr):
    """stderr without make's own `make: *** [...] Error 1`."""
    return [line for line in stderr.splitlines() if not line.startswith("make")]


def refused(stage, name, then, fix):
    return (f"traitflow [{stage}] error: experiment '{name}': not an experiment name (config experiment must match "
            f"{PATTERN}), {then}; fix: {fix}")


def test_names_the_plan_refuses_change_nothing(untouched, capsys, monkeypatch):
    repo = untouched
    before = snapshot(repo)
    existing = f"name a folder under experiments/ ({', '.join(sorted(os.listdir(os.path.join(repo, 'experiments'))))})"
    cases = [(("verify", "EXP=..", "FIX=1"), refused("verify", "..", "nothing checked or removed", existing)),
             (("clean", "EXP=.."), refused("clean", "..", "nothing removed", existing)),
             # tab completion: refused, naming the experiment meant (normalising it would guess at `a/b` too)
             (("clean", "EXP=demo/"), refused("clean", "demo/", "nothing removed", f"did you mean 'demo'? {existing}")),
             (("clean", "EXP=experiments/demo"),
              refused("clean", "experiments/demo", "nothing removed", f"did you mean 'demo'? {existing}"))]
    for args, line in cases:
        proc = make(repo, *args)
        assert proc.returncode != 0 and own_lines(proc.stderr) == [line], (args, proc.stderr)

    from traitflow.core.manifests import main as manifests
    from traitflow.plan.orphans import main as orphans

    monkeypatch.chdir(repo)
    assert orphans(["..", "--delete"]) == 1
    assert capsys.readouterr().err == refused("orphans", "..", "nothing removed", existing) + "\n"
    assert manifests([".."]) == 1
    assert capsys.readouterr().err == \
        "traitflow [manifests] error: experiment '..': not an experiment name (config experiment must match " \
        f"{PATTERN}); fix: {existing}\n"
    proc = make(repo, "clean", "EXP=nope")  # a valid name that names nothing: said, not a silent success
    assert proc.returncode != 0 and own_lines(proc.stderr) == [
        f"traitflow [clean] error: experiments/nope: no such experiment, nothing removed; fix: {existing}"]
    assert snapshot(repo) == before


def export(root, *args):
    proc = subprocess.run([sys.executable, os.path.join(root, "scripts", "export_seed_format.py"), *args], cwd=root,
                          text=True, capture_output=True, timeout=120)
    return proc.returncode, proc.stderr.splitlines()


def test_the_export_never_writes_over_the_workflows_files(untouched):
    repo = untouched
    before = snapshot(repo)
    inside = "which holds the workflow's own files (the export would overwrite them); fix: export to a folder of " \
             "its own, e.g. --out export"
    for out, shown in (("experiments", "experiments"), ("experiments/demo/refusal", "experiments"),
                       ("manifests/x", "manifests"), ("models", "models"), (".venv/x", ".venv")):
        assert export(repo, "--experiment", "demo", "--out", out) == (
            1, [f"traitflow export: --out {out}: lies inside {shown}/, {inside}"]), out
    assert export(repo, "--experiment", "demo", "--out", "README.md") == (
        1, ["traitflow export: --out README.md: exists and is not a folder; fix: name a folder to write the export "
            "into (new or existing), e.g. --out export"])
    code, lines = export(repo, "--experiment", "..", "--out", "export")
    assert (code, lines) == (1, ["traitflow export: experiment '..': not an experiment name (config experiment must "
                                 f"match {PATTERN}); fix: name a folder under experiments/ ("
                                 f"{', '.join(sorted(os.listdir(os.path.join(repo, 'experiments'))))})"])
    assert snapshot(repo) == before


def test_make_clean_removes_exactly_one_experiments_outputs(repo, tmp_path, capsys, monkeypatch):
    outside = tmp_path / "outside"
    write(str(outside / "keep.txt"), b"mine")
    demo = os.path.join(repo, "experiments", "demo")
    write(os.path.join(demo, "mine/extraction/vectors/probe_layer2.pt"), b"a vector the user brought")
    write(os.path.join(demo, "tables/notes.md"), b"force-added by the user")
    subprocess.run(["git", "add", "-f", "experiments/demo/tables/notes.md"], cwd=repo, check=True)
    write(os.path.join(demo, "inference/responses/prompt_99.json"), b"{}")  # of a prompt no longer in the file
    os.symlink(str(outside), os.path.join(demo, "viewer", "outlink"))  # the link goes, never what it leads to
    os.symlink(os.path.join("..", "..", "..", ".venv"), os.path.join(demo, "viewer", "venvlink"))
    traps = ["experiments/other/inference/responses/prompt_0.json", "models/traitflow-demo-chat/config.json",
             "experiments/demo/viewer/venvlink/lib/site.py", "../outside/keep.txt", "experiments/demo/config.yaml"]
    manifest = os.path.join(repo, "manifests/demo/_shared/generate_shard0.json")
    with open(manifest) as fh:
        record = json.load(fh)
    record["files"] += [{"path": p, "bytes": None, "sha256": None} for p in traps]
    with open(manifest, "w") as fh:
        json.dump(record, fh)
    mine = ("experiments/demo", "logs/demo", "manifests/demo")
    before = snapshot(repo, skip=mine)
    inputs = {p for p in tracked(repo) if p.startswith("experiments/demo/")}

    from traitflow.outputs.clean import main

    monkeypatch.chdir(repo)
    everything = snapshot(repo)
    assert main(["demo", "--dry-run"]) == 0 and snapshot(repo) == everything
    plan = capsys.readouterr().out.splitlines()
    assert "would keep experiments/demo/tables/notes.md: git tracks experiments/demo/tables/notes.md" in plan
    proc = make(repo, "clean", "EXP=demo")
    assert proc.returncode == 0, proc.stderr
    left = {os.path.relpath(os.path.join(d, f), repo) for d, _, files in os.walk(demo) for f in files}
    assert left == inputs | {"experiments/demo/mine/extraction/vectors/probe_layer2.pt"}
    assert "experiments/demo/tables/notes.md" in inputs
    assert not os.path.lexists(os.path.join(repo, "logs/demo")) and not os.path.lexists(manifest)
    assert snapshot(repo, skip=mine) == before  # the other experiment, .venv, models, every tracked file
    assert (outside / "keep.txt").read_bytes() == b"mine"
    assert not os.path.lexists(os.path.join(demo, "viewer", "outlink"))
    warned = sorted(line.split(": not removed: ")[0].split("warning: ")[1] for line in proc.stderr.splitlines())
    assert warned == sorted(traps + ["experiments/demo/tables/notes.md"]), proc.stderr
    assert "experiments/demo/tables/notes.md: not removed: git tracks experiments/demo/tables/notes.md" in proc.stderr
    assert "experiments/demo/viewer/venvlink/lib/site.py: not removed: lies in .venv/, which is never removed from" \
        in proc.stderr
    removed = sum(line.startswith("would remove ") for line in plan)
    assert proc.stdout == f"traitflow [clean] experiments/demo: removed {removed} generated file(s) and folder(s); " \
                          f"{len(traps) + 1} left alone (above)\n"
    assert "experiments/other/inference/responses/prompt_0.json: not removed: outside experiments/demo, logs/demo " \
           "and manifests/demo" in proc.stderr


def test_make_verify_fix_removes_a_manifest_that_lists_files_elsewhere_never_those_files(repo):
    """A manifest is only ever a list: one naming a tracked file with another size makes itself damaged."""
    manifest = "manifests/demo/_shared/capture_shard1.json"
    with open(os.path.join(repo, manifest)) as fh:
        record = json.load(fh)
    record["files"].append({"path": "README.md", "bytes": 1, "sha256": None})
    with open(os.path.join(repo, manifest), "w") as fh:
        json.dump(record, fh)
    before = snapshot(repo)
    proc = make(repo, "verify", "EXP=demo", "FIX=1")
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stdout.splitlines() if line.startswith("damaged")] == [
        f"damaged: {manifest}: lists README.md, which is not an output of experiments/demo"], proc.stdout
    del before[manifest]
    assert snapshot(repo) == before  # the manifest alone: the next run reruns its job, which rewrites it

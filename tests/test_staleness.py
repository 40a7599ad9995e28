"""Staleness by content and by damage, at library level (no workflow build): manifests with sizes and
sha256, what a per-shard job declares to Snakemake, and content fingerprints of user files."""

import hashlib
import json
import os
from types import SimpleNamespace

import pytest

from traitflow.plan.declared import Declared, named_paths, plain_run, target_jobs
from traitflow.plan.fingerprints import Fingerprints
from traitflow.core.manifests import damaged_files, find_manifests, missing_files, read_manifest
from traitflow.outputs.scripting import job_outputs, write_manifest


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


@pytest.fixture
def job(tmp_path, monkeypatch):
    """A finished capture-like job in tmp_path: three files and the manifest write_manifest gives them."""
    monkeypatch.chdir(tmp_path)
    files = {"pt": [write(f"exp/t/prompt_{i}.pt", b"x" * (100 + i)) for i in range(2)],
             "shared": [write("exp/shared/prompt_0.safetensors", b"s" * 50)]}
    smk = SimpleNamespace(rule="capture_shard0", wildcards={},
                          params=SimpleNamespace(outputs=files, traits=[{"name": "t"}]),
                          output=SimpleNamespace(manifest="manifests/exp/_shared/capture_shard0.json"))
    write_manifest(smk)
    return smk


def test_manifest_records_every_file_with_its_size_and_sha256(job):
    m = read_manifest(job.output.manifest)
    assert m.rule == "capture_shard0" and m.traits == ["t"]
    assert [(r.path, r.bytes) for r in m.files] == [("exp/t/prompt_0.pt", 100), ("exp/t/prompt_1.pt", 101),
                                                    ("exp/shared/prompt_0.safetensors", 50)]
    assert m.files[0].sha256 == hashlib.sha256(b"x" * 100).hexdigest()
    assert find_manifests("exp") == ["manifests/exp/_shared/capture_shard0.json"]
    assert job_outputs(job).pt == job.params.outputs["pt"]  # scripts read their files from params.outputs


def test_damaged_files_names_missing_resized_and_changed_files(job):
    assert damaged_files(job.output.manifest) == []
    os.truncate("exp/t/prompt_0.pt", 20)
    os.remove("exp/shared/prompt_0.safetensors")
    write("exp/t/prompt_1.pt", b"y" * 101)  # same size, other bytes
    found = {d.path: d.problem for d in damaged_files(job.output.manifest)}
    assert found == {"exp/t/prompt_0.pt": "20 bytes, its manifest records 100",
                     "exp/shared/prompt_0.safetensors": "missing",
                     "exp/t/prompt_1.pt": "content differs from its manifest's sha256"}
    assert "exp/t/prompt_1.pt" not in {d.path for d in damaged_files(job.output.manifest, hashes=False)}


def test_old_and_touched_manifests_read_without_sizes(tmp_path):
    old = write(str(tmp_path / "old.json"), json.dumps({"rule": "r", "files": ["a"]}).encode())
    assert read_manifest(old).files[0].bytes is None
    assert read_manifest(write(str(tmp_path / "touched.json"), b"")) is None  # snakemake --touch
    bad = write(str(tmp_path / "bad.json"), b'{"files": [')
    with pytest.raises(Exception, match="damaged manifest.*delete it"):
        read_manifest(bad)


def test_a_healthy_job_declares_only_its_manifest(job):
    d = Declared([job.output.manifest])
    assert d.outputs(job.output.manifest, job.params.outputs, "logs/repairs") == {"manifest": job.output.manifest}
    assert d.requests == [] and d.traits([job.output.manifest]) == ["t"]


def test_a_lost_file_is_declared_and_requested(job):
    os.remove("exp/t/prompt_1.pt")
    for check_sizes in (True, False):  # by stat, or by one directory listing per folder
        d = Declared([job.output.manifest], check_sizes=check_sizes, warn=False)
        out = d.outputs(job.output.manifest, job.params.outputs, "logs/repairs")
        assert out["extra"] == ["exp/t/prompt_1.pt"] and d.requests == ["exp/t/prompt_1.pt"]


def test_a_resized_file_asks_for_a_repair_note_unique_to_that_damage(job, capsys):
    os.truncate("exp/t/prompt_0.pt", 20)
    d = Declared([job.output.manifest])
    out = d.outputs(job.output.manifest, job.params.outputs, "logs/repairs")
    assert out["repair"].startswith("logs/repairs/capture_shard0.") and d.requests == [out["repair"]]
    assert "exp/t/prompt_0.pt: damaged (20 bytes, its manifest records 100)" in capsys.readouterr().err
    os.truncate("exp/t/prompt_0.pt", 10)  # damaged again later: a new note, so the job reruns again
    again = Declared([job.output.manifest], warn=False).outputs(job.output.manifest, job.params.outputs, "x")
    assert os.path.basename(again["repair"]) != os.path.basename(out["repair"])
    # without the size check the plan makes no stat per file: resized files are make verify's
    quiet = Declared([job.output.manifest], check_sizes=False).outputs(job.output.manifest, job.params.outputs, "x")
    assert quiet == {"manifest": job.output.manifest}


def test_files_named_on_the_command_line_are_declared(job):
    d = Declared([job.output.manifest], named_paths(["-n", "./exp/t/prompt_1.pt", "--cores", "2"]))
    assert d.outputs(job.output.manifest, job.params.outputs, "x")["extra"] == ["exp/t/prompt_1.pt"]


def test_missing_files_lists_each_folder_once(tmp_path):
    a = write(str(tmp_path / "d" / "a"), b"")
    listings = {}
    assert missing_files([a, str(tmp_path / "d" / "b"), str(tmp_path / "nope" / "c")], listings) == [
        str(tmp_path / "d" / "b"), str(tmp_path / "nope" / "c")]
    assert set(listings) == {str(tmp_path / "d"), str(tmp_path / "nope")}


def test_an_older_dated_replacement_changes_the_fingerprint(tmp_path):
    vec = write(str(tmp_path / "probe_layer2.pt"), b"\x01" * 64)
    fp = Fingerprints(str(tmp_path / "cache.json"))
    before = fp(vec)
    fp.save()
    flipped = write(str(tmp_path / "flipped.pt"), b"\x81" * 64)  # same size: a sign flip
    old = os.stat(vec).st_mtime - 7200
    os.utime(flipped, (old, old))  # dated 2 hours back, then moved over the vector
    os.replace(flipped, vec)
    assert Fingerprints(str(tmp_path / "cache.json"))(vec) == hashlib.sha256(b"\x81" * 64).hexdigest() != before
    assert json.load(open(tmp_path / "cache.json"))[os.path.abspath(vec)][3] == before  # cached by size, mtime, inode


def test_hub_cache_files_are_fingerprinted_by_their_blob_name(tmp_path):
    blob = write(str(tmp_path / "blobs" / ("ab" * 32)), b"weights")
    snap = tmp_path / "snapshots" / "rev"
    snap.mkdir(parents=True)
    os.symlink(blob, snap / "model.safetensors")
    fp = Fingerprints(str(tmp_path / "cache.json"))
    assert fp(str(snap / "model.safetensors")) == "ab" * 32  # never read: a model's weights cost no hashing
    assert fp.folder(str(snap)) == fp.folder(str(snap)) and fp(str(tmp_path / "none")) is None


def test_a_run_removes_a_resized_file_so_its_job_rebuilds_it(job):
    os.truncate("exp/t/prompt_0.pt", 20)
    d = Declared([job.output.manifest], remove_damaged=True, warn=False)
    out = d.outputs(job.output.manifest, job.params.outputs, "x")
    assert out == {"manifest": job.output.manifest, "extra": ["exp/t/prompt_0.pt"]} and not os.path.exists(out["extra"][0])


def test_which_command_lines_run_jobs_and_which_job_a_process_runs():
    assert plain_run(["--cores", "2"]) and plain_run(["--config", "traits=[refusal]", "-p"])
    assert not any(plain_run(a) for a in (["-n"], ["-np"], ["--dry-run"], ["--touch"], ["--summary"], ["--lint"]))
    assert target_jobs(["--target-jobs", "capture_shard3:", "generate_shard0:", "--cores", "1"]) == {
        "capture_shard3", "generate_shard0"}
    only = Declared([], only={"capture_shard3"})
    assert only._broken("manifests/e/_shared/capture_shard4.json", set()) == ([], {})


def test_the_run_summary_classifies_by_folder_listings(tmp_path):
    from traitflow.outputs.summary import classify

    old = write(str(tmp_path / "old" / "a.json"), b"")
    os.utime(tmp_path / "old", (1, 1))  # a folder nothing was written to this run
    new = write(str(tmp_path / "new" / "b.json"), b"")
    run_start = os.stat(new).st_mtime - 1
    os.utime(old, (run_start + 5, run_start + 5))  # a stray mtime in an untouched folder is not "built"
    assert classify([old, new, str(tmp_path / "old" / "gone.json")], run_start) == (
        [new], [old], [str(tmp_path / "old" / "gone.json")])


def test_a_rerun_for_damage_writes_its_repair_note(job):
    job.output.repair = "logs/exp/repairs/capture_shard0.abc.txt"
    write_manifest(job)
    assert "capture_shard0 rebuilt its 3 files" in open(job.output.repair).read()


def test_make_clean_lists_every_file_the_manifests_list(job, capsys):
    from traitflow.core.manifests import main

    main(["exp"])
    assert capsys.readouterr().out.split() == [f for group in job.params.outputs.values() for f in group]

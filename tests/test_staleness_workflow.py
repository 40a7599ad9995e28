"""Staleness through the workflow, proven with dry runs on a copy of the built demo (the session's demo_run):
damaged outputs rerun exactly their job, a per-prompt file asked for by name builds only its job, a vector
replaced by an older-dated file reruns what reads it, and a subset of traits recaptures nothing."""

import glob
import json
import os

import torch

from conftest import dry_run, job_counts, snakemake

EXP = "experiments/demo"


def model_jobs(counts):
    return {r: n for r, n in counts.items() if r.startswith(("generate", "capture", "extract", "build_demo_model"))}


def writer_of(workdir, path):
    """The rule whose manifest lists path."""
    for m in glob.glob(os.path.join(workdir, "manifests/demo/**/*.json"), recursive=True):
        with open(m) as fh:
            data = json.load(fh)
        if any(f["path"] == path for f in data["files"]):
            return data["rule"]
    raise AssertionError(f"no manifest lists {path}")


def test_a_truncated_output_reruns_exactly_its_job(demo_copy):
    pt = f"{EXP}/refusal/inference/residual_stream_activations/prompt_1.pt"
    os.truncate(os.path.join(demo_copy, pt), 2000)
    proc = snakemake(demo_copy, "-n", "--quiet", "rules")
    assert f"{pt}: damaged (2000 bytes, its manifest records" in proc.stdout
    counts = dry_run(demo_copy)
    assert model_jobs(counts) == {writer_of(demo_copy, pt): 1}


def test_a_file_asked_for_by_name_builds_only_its_job(demo_copy):
    pt = f"{EXP}/sycophancy/inference/residual_stream_activations/prompt_5.pt"
    def dry_run_of(target):  # the target before --quiet, whose choices would swallow it
        return job_counts(snakemake(demo_copy, target, "-n", "--quiet", "rules").stdout)

    assert dry_run_of(pt) == {}  # up to date: nothing to do
    os.remove(os.path.join(demo_copy, pt))
    assert dry_run_of(pt) == {writer_of(demo_copy, pt): 1}


def test_a_vector_replaced_by_an_older_dated_file_reruns_what_reads_it(demo_copy):
    record = torch.load(os.path.join(demo_copy, EXP, "refusal/inference/residual_stream_activations/prompt_0.pt"),
                        weights_only=True)
    vec = os.path.join(demo_copy, record["metadata"]["vector_path"])  # probe_layer{N}.pt, the vector it projects
    flipped = vec + ".flipped"
    torch.save(-torch.load(vec, weights_only=True), flipped)
    # Dated back (as cp -p, rsync -t or git checkout leave it): older than every output that read the vector.
    # Not older than the workflow's own scripts, which would make Snakemake redo the extraction (code newer
    # than its outputs) and overwrite the replacement; a user's own vector (no examples) has no such limit.
    st = os.stat(vec)
    os.utime(flipped, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
    os.replace(flipped, vec)
    counts = dry_run(demo_copy)
    n_shards = len(glob.glob(os.path.join(demo_copy, "manifests/demo/_shared/capture_shard*.json")))
    # the two passes that read the vector, once per shard; no extraction, generation or layer internals
    assert set(model_jobs(counts)) == {f"{stage}_shard{k}" for stage in ("capture", "capture_single_layer")
                                       for k in range(n_shards)}
    assert counts.get("projections_table_vector") == 1 and counts.get("projections_table") == 1  # refusal's only


def test_a_subset_of_traits_recaptures_nothing_and_neither_does_going_back(demo_copy):
    subset = ("--config", "traits=[refusal]")
    counts = dry_run(demo_copy, *subset)
    assert model_jobs(counts) == {} and not any(r.startswith(("dynamics_shard", "capture_single")) for r in counts)
    snakemake(demo_copy, "--cores", "2", *subset)  # the viewer, tables and report follow the choice
    with open(os.path.join(demo_copy, EXP, "viewer/index.json")) as fh:
        assert [t["name"] for t in json.load(fh)["traits"]] == ["refusal"]
    counts = dry_run(demo_copy)
    assert model_jobs(counts) == {} and counts  # back to all traits: only the aggregates again

"""The demo experiment through --profile profiles/slurm on a real one-node Slurm cluster.

The cluster (tests/slurm_cluster.py) runs on 127.0.0.1 with two placeholder GPUs and no
accounting database, as on many small clusters; `make test` installs slurm-wlm and munge
first (`make slurm-deps`). If the daemons cannot start, the test fails and says why.
"""

import os
import re
import time

import pytest
import yaml

from conftest import job_counts, make_workdir, snakemake
from slurm_cluster import PARTITION, SlurmCluster
from traitflow.core.formats import load_json, load_pt
from traitflow.experiment.prompts import read_prompts
from traitflow.outputs.verify import verify_file

# One trait and one prompt shard: every kind of model job (extraction, generation, capture) once, on
# allocations of their own; more traits would add more of the same job at about 10 s each.
SLURM_TEST_CONFIG = {"traits": ["refusal"], "capture": {"prompts_per_job": 24}, "generation": {"max_new_tokens": 10}}

MODEL_JOB_MEM_MB = 1500
MODEL_RULES = ("build_demo_model", "extract_vectors", "generate_shard", "capture_shard")


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    cluster = SlurmCluster(str(tmp_path_factory.mktemp("slurm")))
    with pytest.MonkeyPatch.context() as mp:
        try:
            cluster.start()
            mp.setenv("SLURM_CONF", cluster.conf)  # sbatch/squeue, here and in every job, find this cluster
            yield cluster
        finally:
            cluster.stop()


def use_test_cluster(workdir):
    """The shipped profile, with its placeholders filled in for the test cluster.

    No account (without slurmdbd there is none to validate), quick status checks,
    and successful jobs' Slurm logs kept so the test can read them.
    """
    path = f"{workdir}/profiles/slurm/config.yaml"
    with open(path) as fh:
        profile = yaml.safe_load(fh)
    profile["default-resources"]["slurm_partition"] = PARTITION
    del profile["default-resources"]["slurm_account"]
    profile["slurm-init-seconds-before-status-checks"] = 2
    profile["seconds-between-status-checks"] = 1  # three jobs in a row: each would wait up to 10 s to be seen done
    profile["slurm-keep-successful-logs"] = True
    with open(path, "w") as fh:
        yaml.safe_dump(profile, fh)
    overlay = f"{workdir}/profiles/slurm/{profile['configfile']}"
    with open(overlay) as fh:
        model_jobs = yaml.safe_load(fh)
    model_jobs["resources"]["mem_mb"] = MODEL_JOB_MEM_MB  # the node's memory, not a GPU server's
    model_jobs["capture"] = {"device": "cpu"}  # the test cluster's GPUs are placeholder device files
    with open(overlay, "w") as fh:
        yaml.safe_dump(model_jobs, fh)
    return profile


def all_layers_targets(workdir):
    """Every all-layers capture file of the test's traits (.pt and .json per trait and prompt)."""
    exp = f"{workdir}/experiments/demo"
    traits = SLURM_TEST_CONFIG["traits"]
    n_prompts = len(read_prompts(f"{exp}/inference_prompts.json"))
    return [f"experiments/demo/{t}/inference/residual_stream_activations/prompt_{i}.{ext}"
            for t in traits for i in range(n_prompts) for ext in ("pt", "json")]


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    """The all-layers captures of one demo trait: its vector, the responses and the captures, 3 Slurm jobs.

    The rules after capture (single layer, dynamics, reports) go through the same submission path.
    """
    workdir = make_workdir(str(tmp_path_factory.mktemp("slurm_run")), SLURM_TEST_CONFIG)
    use_test_cluster(workdir)
    targets = all_layers_targets(workdir)
    planned = job_counts(snakemake(workdir, *targets, "--profile", "profiles/slurm", "-n", "--quiet", "rules").stdout)
    start = time.time()
    proc = snakemake(workdir, *targets, "--profile", "profiles/slurm")
    print(f"Slurm run: {sum(planned.values())} jobs in {time.time() - start:.0f} s")
    submitted = re.findall(r"submitted with SLURM jobid (\d+) \(log: (\S+?)\)\.?$", proc.stdout, re.M)
    return {"dir": workdir, "output": proc.stdout, "planned": planned, "submitted": submitted,
            "targets": targets, "jobs": slurm_cluster.jobs()}


def rule_of(slurm_log):
    return re.search(r"/rule_([^/]+)/", slurm_log)[1]


def test_every_model_job_ran_through_slurm_with_a_gpu(slurm_run):
    assert slurm_run["submitted"], slurm_run["output"][-4000:]
    ran = {}
    for jobid, log in slurm_run["submitted"]:
        job = slurm_run["jobs"][jobid]  # MinJobAge keeps finished jobs in scontrol's view
        assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", job
        assert job["Partition"] == PARTITION
        assert os.path.isfile(log), f"Slurm log of job {jobid} missing"
        rule = rule_of(log)
        ran[rule] = ran.get(rule, 0) + 1
        if rule != "build_demo_model":  # model-loading jobs: resources from profiles/slurm/model_jobs.yaml
            assert "gpu:1" in job.get("TresPerJob", ""), (rule, job.get("TresPerJob"))
            assert job["MinMemoryNode"] == f"{MODEL_JOB_MEM_MB}M"
    planned_model_jobs = {r: n for r, n in slurm_run["planned"].items() if r.startswith(MODEL_RULES)}
    assert planned_model_jobs and {r: ran.get(r, 0) for r in planned_model_jobs} == planned_model_jobs


def test_every_all_layers_output_is_valid(slurm_run):
    assert slurm_run["targets"]
    for path in slurm_run["targets"]:
        assert verify_file(f"{slurm_run['dir']}/{path}", "all_layers") == [], path


def test_every_trait_saw_the_shared_response(slurm_run):
    """Jobs on different Slurm allocations still read one response per prompt."""
    for path in slurm_run["targets"]:
        if path.endswith(".pt"):
            record = load_pt(f"{slurm_run['dir']}/{path}")
            shared = load_json(f"{slurm_run['dir']}/{record['metadata']['response_source']}")
            assert record["response"]["token_ids"] == shared["response"]["token_ids"], path
            assert record["prompt"]["token_ids"] == shared["prompt"]["token_ids"], path

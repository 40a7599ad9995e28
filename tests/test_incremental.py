"""Incremental rebuilds, proven with dry runs on a copy of the built demo.

No test depends on a wall-clock window: instead of dating an edited input in the
future (a job finishing within that window would then leave an output older
than its input, and Snakemake aborts), every existing file is first dated an
hour back, order kept, so an input edited now is newer than every output and
every output written afterwards is newer than it.
"""

import os

import torch

from conftest import N_SHARDS, PER_SHARD, date_back, dry_run, shards, snakemake
from demo_prompts import DEMO_PROMPTS, with_prompt_text

EXP = "experiments/demo"


def rewrite(workdir, path, data):
    """Change a file's content after dating everything else back: it is now the newest file."""
    date_back(workdir)
    with open(path, "wb") as fh:
        fh.write(data)


def capture_jobs(counts):
    return {rule: n for rule, n in counts.items() if rule.startswith("capture_shard")}


def projections(workdir, trait, i):
    rec = torch.load(os.path.join(workdir, EXP, trait, "inference/residual_stream_activations", f"prompt_{i}.pt"),
                     weights_only=True)
    return torch.cat([rec["projections"]["prompt"], rec["projections"]["response"]])


def test_noop_rerun_schedules_nothing(demo_copy):
    assert dry_run(demo_copy) == {}
    proc = snakemake(demo_copy, "--cores", "2")
    assert "Nothing to be done" in proc.stdout


def test_changing_one_vector_reruns_only_captures_and_updates_only_that_trait(demo_copy):
    vec = os.path.join(demo_copy, EXP, "sycophancy/extraction/vectors/probe_layer2.pt")  # the trait's vector
    responses = os.path.join(demo_copy, EXP, "inference/responses")
    before = {t: projections(demo_copy, t, 5) for t in ("sycophancy", "refusal")}
    response_bytes = {f: open(os.path.join(responses, f), "rb").read() for f in os.listdir(responses)}
    date_back(demo_copy)
    torch.save(-torch.load(vec, weights_only=True), vec)
    counts = dry_run(demo_copy)
    # Nothing upstream reruns; downstream, one capture pass per shard plus experiment-wide aggregates.
    assert not any(r.startswith(("generate", "extract", "build_demo_model")) for r in counts)
    assert sum(capture_jobs(counts).values()) == N_SHARDS
    snakemake(demo_copy, "--cores", "2")
    # The rerun took effect: the negated vector negates that trait's projections, and only those.
    torch.testing.assert_close(projections(demo_copy, "sycophancy", 5), -before["sycophancy"])
    torch.testing.assert_close(projections(demo_copy, "refusal", 5), before["refusal"])
    assert {f: open(os.path.join(responses, f), "rb").read() for f in os.listdir(responses)} == response_bytes
    assert dry_run(demo_copy) == {}  # and the run left nothing stale


def test_changing_one_traits_examples_reruns_its_extraction_and_captures(demo_copy):
    path = os.path.join(demo_copy, EXP, "refusal/extraction/positive.txt")
    rewrite(demo_copy, path, open(path, "rb").read() + b"I will not help with that.\n")
    counts = dry_run(demo_copy)
    assert counts.pop("extract_vectors") == 1
    assert sum(capture_jobs(counts).values()) == N_SHARDS
    assert not any(r.startswith("generate") for r in counts)


def test_changing_one_prompt_reruns_only_its_shard(demo_copy):
    new = with_prompt_text(demo_copy, PER_SHARD + 1, "My poem is the best ever written, isn't it?")  # in shard 1
    rewrite(demo_copy, os.path.join(demo_copy, DEMO_PROMPTS), new)
    counts = dry_run(demo_copy)
    assert counts.get("generate_shard1") == 1
    assert not {"generate_shard0", "extract_vectors"} & set(counts)
    assert capture_jobs(counts) == {"capture_shard1": 1}  # one pass for every trait


def test_adding_a_trait_schedules_no_generation(demo_copy):
    src = os.path.join(demo_copy, EXP, "refusal/extraction")
    dst = os.path.join(demo_copy, EXP, "honesty/extraction")
    os.makedirs(dst)
    for name in ("positive.txt", "negative.txt"):
        with open(os.path.join(src, name)) as fh, open(os.path.join(dst, name), "w") as out:
            out.write(fh.read())
    counts = dry_run(demo_copy)
    assert not any(r.startswith("generate") for r in counts)
    assert counts.get("extract_vectors") == 1
    assert sum(capture_jobs(counts).values()) == N_SHARDS


def test_changing_generation_settings_regenerates_everything(demo_copy):
    with open(os.path.join(demo_copy, "longer.yaml"), "w") as fh:
        fh.write("generation:\n  max_new_tokens: 11\n")
    counts = dry_run(demo_copy, "--configfile", "longer.yaml")
    assert {r for r in counts if r.startswith("generate")} == shards("generate")


def test_batch_sizes_and_token_budget_are_speed_only(demo_copy):
    assert dry_run(demo_copy, "--config", "generation={batch_size: 1}",
                   "capture={batch_size: 1, max_batch_tokens: 32}") == {}


def test_a_deleted_output_file_reruns_only_the_job_that_wrote_it(demo_copy):
    os.remove(os.path.join(demo_copy, EXP, "refusal/inference/dynamics/prompt_1.json"))  # shard 0
    os.remove(os.path.join(demo_copy, EXP, f"inference/responses/prompt_{PER_SHARD + 5}.json"))  # shard 1, shared
    counts = dry_run(demo_copy)
    assert counts.get("generate_shard1") == 1 and "generate_shard0" not in counts
    assert capture_jobs(counts) == {"capture_shard1": 1}  # every trait reads the regenerated response
    assert counts.get("dynamics_shard0") == 1  # for the deleted file


def test_a_deleted_benchmark_file_reruns_nothing(demo_copy):
    os.remove(os.path.join(demo_copy, "logs/demo/benchmarks/generate/shard0.tsv"))
    assert dry_run(demo_copy) == {}

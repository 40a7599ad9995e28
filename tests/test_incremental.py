"""Incremental rebuilds, proven with dry runs on a copy of the built demo."""

import os
import time

from conftest import dry_run, snakemake

EXP = "experiments/demo"


def rewrite_later(path, data):
    """Change a file's content and make its mtime clearly newer than the outputs built from it."""
    with open(path, "wb") as fh:
        fh.write(data)
    t = time.time() + 5
    os.utime(path, (t, t))


def capture_jobs(counts):
    return {rule: n for rule, n in counts.items() if rule.startswith("capture_all_layers")}


def test_noop_rerun_schedules_nothing(demo_copy):
    assert dry_run(demo_copy) == {}
    proc = snakemake(demo_copy, "--cores", "2")
    assert "Nothing to be done" in proc.stdout


def test_changing_one_vector_reruns_only_that_trait(demo_copy):
    import torch
    vec = os.path.join(demo_copy, EXP, "sycophancy/extraction/vectors/probe_layer2.pt")
    torch.save(-torch.load(vec, weights_only=True), vec)
    t = time.time() + 5
    os.utime(vec, (t, t))
    counts = dry_run(demo_copy)
    # Nothing upstream reruns; downstream, one trait's captures (3 shards) plus experiment-wide aggregates.
    assert not any(r.startswith(("generate", "extract", "build_demo_model")) for r in counts)
    assert sum(capture_jobs(counts).values()) == 3
    proc = snakemake(demo_copy, "--cores", "2")
    assert "sycophancy" in proc.stdout
    line = next(l for l in proc.stdout.splitlines() if l.startswith("refusal "))
    assert line.split()[1] == "0"  # refusal: nothing rebuilt


def test_changing_one_traits_examples_reruns_its_extraction_and_captures(demo_copy):
    path = os.path.join(demo_copy, EXP, "refusal/extraction/positive.txt")
    rewrite_later(path, open(path, "rb").read() + b"I will not help with that.\n")
    counts = dry_run(demo_copy)
    assert counts.pop("extract_vectors") == 1
    assert sum(capture_jobs(counts).values()) == 3
    assert not any(r.startswith("generate") for r in counts)


def test_changing_one_prompt_reruns_only_its_shard(demo_copy):
    path = os.path.join(demo_copy, EXP, "inference_prompts.txt")
    lines = open(path).read().splitlines()
    lines[5] = "My poem is the best ever written, isn't it?"  # prompt 5 lives in shard 1 (4 per shard)
    rewrite_later(path, ("\n".join(lines) + "\n").encode())
    counts = dry_run(demo_copy)
    assert counts.get("generate_shard1") == 1
    assert not {"generate_shard0", "generate_shard2", "extract_vectors"} & set(counts)
    assert capture_jobs(counts) == {"capture_all_layers_shard1": 3}  # one per trait


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
    assert sum(capture_jobs(counts).values()) == 3


def test_changing_generation_settings_regenerates_everything(demo_copy):
    with open(os.path.join(demo_copy, "longer.yaml"), "w") as fh:
        fh.write("generation:\n  max_new_tokens: 11\n")
    counts = dry_run(demo_copy, "--configfile", "longer.yaml")
    assert {r for r in counts if r.startswith("generate")} == {"generate_shard0", "generate_shard1", "generate_shard2"}


def test_a_deleted_output_file_reruns_only_the_job_that_wrote_it(demo_copy):
    os.remove(os.path.join(demo_copy, EXP, "refusal/inference/dynamics/prompt_5.json"))  # shard 1
    os.remove(os.path.join(demo_copy, EXP, "inference/responses/prompt_9.json"))  # shard 2, shared
    counts = dry_run(demo_copy)
    assert counts.get("generate_shard2") == 1 and not {"generate_shard0", "generate_shard1"} & set(counts)
    assert capture_jobs(counts) == {"capture_all_layers_shard2": 3}  # every trait reads the regenerated response
    assert counts.get("dynamics_shard1") == 1  # refusal's, for the deleted file

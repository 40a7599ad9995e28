"""Rows measured in this process on the benchmark model: generation + all-layers capture vs the original
method (row group `generate`), and the capture's overhead over a plain eager forward (group `capture`)."""

import os

import torch

# harness first: importing it puts benchmarks/ and tests/ (conftest) on sys.path
from harness import MODES, REPO, timed
from original_method import original_method
from traitflow.model.capture import batches, capture, left_pad
from traitflow.model.generate import encode_prompt, generate
from traitflow.experiment.prompt_sets import default_prompt_files
from traitflow.experiment.prompts import read_prompts


def bench_prompts(tokenizer, n):
    texts = read_prompts(default_prompt_files(os.path.join(REPO, "experiments", "demo"))[0])  # .txt, .jsonl or .json
    return [encode_prompt(tokenizer, texts[i % len(texts)], chat_template=True) for i in range(n)]


def generate_and_capture(model, prompt_ids, vectors, new_tokens, traits_per_pass=1):
    """One shared response per prompt, then capture passes of traits_per_pass traits each (the workflow
    projects every trait in one pass: traits_per_pass = len(vectors))."""
    responses = generate(model, prompt_ids, [], new_tokens, temperature=0.7, top_p=0.95, batch_size=8)
    sequences = [p + r for p, r in zip(prompt_ids, responses)]
    for k in range(0, len(vectors), traits_per_pass):
        capture(model, sequences, vectors[k:k + traits_per_pass], batch_size=8)
    return sequences


def bench_generate_capture(table, model, prompt_ids, vectors, mode):
    m = MODES[mode]
    print(f"generate+capture: {m['prompts']} prompts x {m['new_tokens']} tokens x {m['traits']} traits", flush=True)
    # ours: every trait projected in one pass, as the workflow's capture job per shard runs
    ours, sequences = timed(generate_and_capture, model, prompt_ids, vectors, m["new_tokens"], len(vectors))
    per_trait, _ = timed(generate_and_capture, model, prompt_ids, vectors, m["new_tokens"])
    original, _ = timed(original_method, model, prompt_ids, vectors, m["new_tokens"], 0.7)
    size = f"{m['prompts']} prompts x {m['new_tokens']} tokens x {m['traits']} traits"
    table.add(f"generate + all-layers capture, {size}, vs the original method", f"{ours:.1f} s",
              f"{original:.1f} s", f"{original / ours:.1f}x faster", ">= 20x", original / ours >= 20,
              "one KV-cached batched generation shared by all traits + one teacher-forced pass projecting every "
              "trait (the workflow's capture job per shard), vs a full no-cache recompute per token, per prompt, "
              "per trait")
    table.add("the same with one capture pass per trait (library calls)",
              f"{per_trait:.1f} s", f"{original:.1f} s", f"{original / per_trait:.1f}x faster", "(for information)",
              None, f"a capture pass costs the same for 1 or {m['traits']} vectors: what one pass for every trait saves")
    return sequences


def plain_forward(model, sequences, batch_size=8):
    """The same batches capture runs, with no hooks."""
    device = next(model.parameters()).device
    for group in batches(sequences, batch_size):
        ids, mask, positions = left_pad([sequences[i] for i in group], 0, device)
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False, logits_to_keep=1)


def bench_capture_overhead(table, model, sequences, vectors, repeats):
    """Interleaved repeats, best of each: the least-disturbed run of each side."""
    times = {"plain": [], "capture": []}
    for _ in range(repeats):
        times["plain"].append(timed(plain_forward, model, sequences)[0])
        times["capture"].append(timed(capture, model, sequences, vectors, batch_size=8)[0])
    plain, cap = min(times["plain"]), min(times["capture"])
    table.add(f"capture (all layers x 3 points, attention, {len(vectors)} traits) vs a plain eager forward, "
              f"{len(sequences)} sequences", f"{cap * 1e3:.0f} ms", f"{plain * 1e3:.0f} ms",
              f"{cap / plain:.2f}x", "<= 1.3x", cap / plain <= 1.3,
              "projection is one small matmul per hook on the device; the head-mean of attention the eager "
              "pass computes anyway is the only other extra")

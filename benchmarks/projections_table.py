"""Build time and size of the projections table at scale (issue 13: 10 traits x 200 prompts x 500 tokens x 26 layers).

Writes a synthetic experiment in the capture's file layout (docs/formats.md): per
(trait, prompt) an all-layers .pt, per prompt a shared .safetensors with the residual
norms (and, with --attention, the packed head-mean attention a real capture stores
there too), then builds the table the way the workflow does: one process per trait
(what a `script:` job costs: interpreter, imports, reading every capture of the trait,
building, writing), --jobs of them at a time (the cores Snakemake would use). Snakemake
adds ~0.4 s of start-up per `script:` job on top (docs/design.md, "Job granularity").

Synthetic scores: per token, a random walk over layers (residuals accumulate), with
norms growing with depth, so the bytes look like float32 projections, not zeros.
Random mantissas compress little; real projections are no better.

usage: python benchmarks/projections_table.py [--dir DIR] [--traits 10] [--prompts 200]
       [--prompt-tokens 300] [--response-tokens 200] [--layers 26] [--jobs 2] [--attention] [--compare]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from traitflow import SUBLAYERS  # noqa: E402


def write_experiment(exp, traits, prompts, n_prompt, n_response, layers, attention):
    import torch

    from traitflow.core.shared import write_shared

    rng = np.random.default_rng(0)
    T = n_prompt + n_response
    for i in range(prompts):
        ids = rng.integers(10, 250000, size=T).tolist()
        norms = (np.abs(rng.normal(size=(T, layers, 3))) + np.linspace(1, 40, layers)[None, :, None]).astype(np.float32)
        att = None
        if attention:
            att = np.tril(rng.random((layers, T, T), dtype=np.float32))
            att /= att.sum(-1, keepdims=True)
        write_shared(f"{exp}/inference/shared/prompt_{i}.safetensors", ids, n_prompt, norms, attention=att)
        tokens = [f"tok{t}" for t in ids]
        for trait in traits:
            proj = np.cumsum(rng.normal(size=(T, layers, 3)), axis=1).astype(np.float32)
            rec = {"prompt": {"text": "", "tokens": tokens[:n_prompt], "token_ids": ids[:n_prompt], "n_tokens": n_prompt},
                   "response": {"text": "", "tokens": tokens[n_prompt:], "token_ids": ids[n_prompt:],
                                "n_tokens": n_response},
                   "projections": {"prompt": torch.from_numpy(proj[:n_prompt]), "response": torch.from_numpy(proj[n_prompt:])},
                   "metadata": {"trait": trait, "n_layers": layers, "sublayers": list(SUBLAYERS),
                                "shared_file": f"../../../inference/shared/prompt_{i}.safetensors"}}
            path = f"{exp}/{trait}/inference/residual_stream_activations/prompt_{i}.pt"
            os.makedirs(os.path.dirname(path), exist_ok=True)
            torch.save(rec, path)


JOB = """
import sys, time
t0 = time.perf_counter()
from traitflow.outputs.projections_table import build_partition, partition_path
exp, trait, prompts = sys.argv[1], sys.argv[2], int(sys.argv[3])
t1 = time.perf_counter()
captures = [("default", i, f"{exp}/{trait}/inference/residual_stream_activations/prompt_{i}.pt") for i in range(prompts)]
build_partition(captures, partition_path(f"{exp}/tables/projections", trait))
print(t1 - t0, time.perf_counter() - t1, time.process_time())
"""


def build_all(exp, traits, prompts, jobs):
    """Every trait's part, `jobs` processes at a time; returns (wall s, [(import s, build s, CPU s)])."""
    start, pending, running, times = time.perf_counter(), list(traits), [], []
    while pending or running:
        while pending and len(running) < jobs:
            running.append(subprocess.Popen([sys.executable, "-c", JOB, exp, pending.pop(0), str(prompts)],
                                            stdout=subprocess.PIPE, text=True))
        proc = running.pop(0)
        out, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"a table job failed ({proc.returncode})")
        times.append(tuple(map(float, out.split())))
    return time.perf_counter() - start, times


def compare_compression(exp, trait, prompts):
    """Size and write time of one trait's part under other Parquet settings (the last one is what the table uses).

    pyarrow's defaults dictionary-encode every column: a float column never fits its
    dictionary, but the attempt costs time and leaves a dictionary page behind.
    """
    import pyarrow.parquet as pq

    from traitflow.outputs.projections_table import build_table, read_prompt

    table = build_table(read_prompt(f"{exp}/{trait}/inference/residual_stream_activations/prompt_{i}.pt", i)
                        for i in range(prompts))
    floats = [n for n in table.column_names if n.startswith(("proj_", "cos_"))]
    for name, kwargs in [("none", {"compression": "none"}), ("snappy", {"compression": "snappy"}),
                         ("zstd-1", {"compression": "zstd", "compression_level": 1}),
                         ("zstd-3", {"compression": "zstd", "compression_level": 3}),
                         ("zstd-1 + byte_stream_split", {"compression": "zstd", "compression_level": 1,
                                                         "use_byte_stream_split": floats, "use_dictionary": False}),
                         ("zstd-1, no float dictionary", {"compression": "zstd", "compression_level": 1,
                                                          "use_dictionary": ["prompt_set", "prompt_index", "token_index", "token",
                                                                             "token_id", "segment"]})]:
        path = f"{exp}/compare.parquet"
        t0 = time.perf_counter()
        pq.write_table(table, path, **kwargs)
        t1 = time.perf_counter()
        pq.read_table(path)
        print(f"  {name:28s} {os.path.getsize(path) / 2**20:7.1f} MiB  write {t1 - t0:5.2f} s  "
              f"read {time.perf_counter() - t1:5.2f} s")
        os.unlink(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", help="keep the synthetic experiment here (default: a temporary folder)")
    ap.add_argument("--traits", type=int, default=10)
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--prompt-tokens", type=int, default=300)
    ap.add_argument("--response-tokens", type=int, default=200)
    ap.add_argument("--layers", type=int, default=26)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--attention", action="store_true", help="store attention in the shared files, like a capture")
    ap.add_argument("--compare", action="store_true", help="also compare Parquet compression settings")
    a = ap.parse_args()
    exp = a.dir or tempfile.mkdtemp(prefix="traitflow-projections-")
    traits = [f"trait{k}" for k in range(a.traits)]
    T = a.prompt_tokens + a.response_tokens
    if not os.path.exists(f"{exp}/inference/shared/prompt_{a.prompts - 1}.safetensors"):
        t0 = time.perf_counter()
        write_experiment(exp, traits, a.prompts, a.prompt_tokens, a.response_tokens, a.layers, a.attention)
        print(f"synthetic experiment written in {time.perf_counter() - t0:.1f} s: {exp}")
    shutil.rmtree(f"{exp}/tables", ignore_errors=True)
    subprocess.run(["sync"])
    wall, times = build_all(exp, traits, a.prompts, a.jobs)
    parts = [f"{exp}/tables/projections/trait={t}/part-0.parquet" for t in traits]
    sizes = [os.path.getsize(p) for p in parts]
    rows = a.prompts * T
    raw = rows * a.layers * 3 * 2 * 4
    print(f"{a.traits} traits x {a.prompts} prompts x {T} tokens x {a.layers} layers = {a.traits * rows:,} rows, "
          f"{2 * 3 * a.layers} float32 value columns")
    print(f"build, {a.jobs} jobs at a time: {wall:.1f} s wall; per job: imports {np.mean([t[0] for t in times]):.2f} s, "
          f"read+build+write {np.mean([t[1] for t in times]):.2f} s (max {max(t[1] for t in times):.2f} s)")
    cpu = sum(t[2] for t in times)
    print(f"CPU time of the jobs: {cpu:.1f} s in all, {cpu / len(times):.2f} s per job; on {a.jobs} cores of their "
          f"own that is {cpu / a.jobs:.1f} s wall (load average now {os.getloadavg()[0]:.1f}: other work shares them)")
    print(f"size: {sum(sizes) / 2**20:.0f} MiB in all, {np.mean(sizes) / 2**20:.1f} MiB per trait "
          f"({np.mean(sizes) / raw:.0%} of the raw float32 values), {sum(sizes) / (a.traits * rows):.0f} bytes per row")
    import pandas as pd

    t0 = time.perf_counter()
    df = pd.read_parquet(f"{exp}/tables/projections", columns=["trait", "prompt_index", "token_index", "segment",
                                                                f"proj_L{a.layers // 2}_residual_out"])
    t1 = time.perf_counter()
    resp = df[df.segment == "response"]
    resp.pivot_table(index=["prompt_index", "token_index"], columns="trait",
                     values=f"proj_L{a.layers // 2}_residual_out").corr()
    print(f"pandas: read 5 columns of every trait {t1 - t0:.2f} s, trait-by-trait correlation {time.perf_counter() - t1:.2f} s")
    if a.compare:
        print("one trait's part under other settings:")
        compare_compression(exp, traits[0], a.prompts)
    if not a.dir:
        shutil.rmtree(exp)


if __name__ == "__main__":
    main()

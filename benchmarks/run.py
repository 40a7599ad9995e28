"""traitflow benchmarks: every ratio of docs/design.md ("Performance targets"), measured side by side in one run.

    python benchmarks/run.py --quick     # make bench       (CI-sized: a few minutes on 2 cores)
    python benchmarks/run.py --full      # make bench-full  (the target sizes)
    python benchmarks/run.py --quick --only depth planning   # issue 10's rows: real depth, planning
    python benchmarks/run.py --quick --only real   # SmolLM2-135M-Instruct (needs requirements-real.txt installed)

Prints one markdown table (paste it into docs/benchmarks.md). Ratios, not
absolute times, are the result: both sides of a ratio run in this process
(or its children) one right after the other, so machine load hits both.
In-process torch work runs on --threads threads (default 1) so that a busy
neighbour core does not make one side's thread pool stall.
"""

import argparse
import os
import platform
import tempfile
import time

import torch

from cold_workflow import bench_workflow
from depth import bench_depth
from harness import MODES, Table
from in_process import bench_capture_overhead, bench_generate_capture, bench_prompts, generate_and_capture
from logit_lens import bench_lens
from memory import bench_memory
from planning import bench_planning
from real_model import bench_real
from traitflow.demo.spec import build_demo_model
from traitflow.model.modeling import load_model, load_tokenizer


# A random Gemma-2 a few hundred units wide with 8 layers; the window covers every sequence, as gemma-2's 4096 does.
BENCH_SPEC = {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 8, "num_attention_heads": 4,
              "num_key_value_heads": 2, "head_dim": 64, "sliding_window": 4096, "max_position_embeddings": 4096}


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
            f"load average at start {os.getloadavg()[0]:.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="mode", action="store_const", const="quick")
    size.add_argument("--full", dest="mode", action="store_const", const="full")
    size.add_argument("--tiny", dest="mode", action="store_const", const="tiny", help="seconds-long smoke run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for in-process work and every process of the depth rows (default 1)")
    rows = ["generate", "capture", "workflow", "planning", "memory", "depth", "lens", "real"]
    parser.add_argument("--only", nargs="*", choices=rows, default=rows, help="measure only these rows")
    args = parser.parse_args()
    mode = args.mode or "quick"
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    print(f"mode {mode}; {machine()}", flush=True)
    table = Table()
    with tempfile.TemporaryDirectory(prefix="traitflow_bench_") as tmp:
        model_dir = os.path.join(tmp, "model")
        m = MODES[mode]
        if {"generate", "capture", "memory"} & set(args.only):
            build_demo_model(model_dir, BENCH_SPEC)
            model, tokenizer = load_model(model_dir, "cpu", "float32", eager=True), load_tokenizer(model_dir)
            prompt_ids = bench_prompts(tokenizer, m["prompts"])
            vectors = torch.randn(m["traits"], model.config.hidden_size, generator=torch.Generator().manual_seed(0))
        sequences = None
        if "generate" in args.only:
            sequences = bench_generate_capture(table, model, prompt_ids, vectors, mode)
        if "capture" in args.only:
            if sequences is None:
                sequences = generate_and_capture(model, prompt_ids, vectors[:0], m["new_tokens"])
            bench_capture_overhead(table, model, sequences, vectors, m["repeats"])
        if "workflow" in args.only:
            bench_workflow(table, tmp)
        if "depth" in args.only:
            bench_depth(table, tmp, mode, args.threads)
        if "planning" in args.only:
            bench_planning(table, tmp, m["planning"])
        if "memory" in args.only:
            bench_memory(table, model_dir, tmp, m["memory"])
        if "lens" in args.only:
            bench_lens(table, m["repeats"], args.threads)
        if "real" in args.only:
            bench_real(table, tmp, m["repeats"], args.threads)
    print(f"\n{mode} mode, {machine()}, torch threads {args.threads}, {time.perf_counter() - start:.0f} s in all\n")
    print(table.markdown())


if __name__ == "__main__":
    main()

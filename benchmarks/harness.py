"""The benchmark harness every group of rows shares: sizes per mode, the result table, timers and
child processes (Snakemake runs, fresh Python processes) measured the same way.

Importing it puts benchmarks/ and tests/ (conftest's workdir helpers) on sys.path.
"""

import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [p for p in (HERE, os.path.join(REPO, "tests")) if p not in sys.path]

# depth: the real-depth experiment (issue 10 item 7): traits, prompts, prompt tokens, response tokens, and the
# (trait, prompt) pairs the original method runs (its time is scaled linearly to traits x prompts).
# planning: (traits, prompts) of the dry-run / no-op experiments.
MODES = {
    "tiny": {"prompts": 2, "new_tokens": 10, "traits": 2, "repeats": 1, "memory": [(2, 16), (4, 16)],  # debugging
             "depth": {"traits": 3, "prompts": 4, "prompt_tokens": 40, "new_tokens": 10, "original_pairs": 1,
                       "stage_repeats": 1},
             "planning": [(10, 200)]},
    "quick": {"prompts": 8, "new_tokens": 50, "traits": 5, "repeats": 3,
              "memory": [(4, 256), (16, 256), (16, 64), (16, 512)],
              "depth": {"traits": 10, "prompts": 16, "prompt_tokens": 300, "new_tokens": 200, "original_pairs": 1,
                        "stage_repeats": 2},
              "planning": [(10, 200), (30, 1000)]},
    "full": {"prompts": 16, "new_tokens": 100, "traits": 5, "repeats": 5,
             "memory": [(4, 512), (16, 512), (64, 512), (16, 128), (16, 1024)],
             "depth": {"traits": 10, "prompts": 16, "prompt_tokens": 300, "new_tokens": 200, "original_pairs": 3,
                       "stage_repeats": 3},
             "planning": [(10, 200), (30, 1000)]},
}
# Rules whose jobs load a model (scripts that call traitflow.model.modeling.load_model); build_demo_model
# builds the embedded model instead and is counted apart.
MODEL_RULES = ("extract_vectors", "generate_shard", "capture_shard", "capture_layer_internals_shard")
# Issue 10's settings for a real experiment: the single-layer deep dive off (the schema default),
# dynamics from the capture's own method (the synthetic traits have probe vectors only).
REAL_RUN_CONFIG = {"dynamics": {"methods": ["auto"]}, "single_layer": {"layers": []}}
PYTHON = sys.executable


class Table:
    def __init__(self):
        self.rows = []

    def add(self, name, ours, baseline, ratio, target, met, why):
        self.rows.append((name, ours, baseline, ratio, target, {True: "yes", False: "**no**", None: "-"}[met], why))
        print(f"  {name}: {ours} vs {baseline}: {ratio} (target {target})", flush=True)

    def markdown(self):
        head = ("measurement", "traitflow", "baseline", "ratio", "target", "met", "why")
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in self.rows])


def best_cpu(sides, repeats):
    """{side: (best CPU s, best wall s)}, sides run interleaved after one warm-up each."""
    for fn in sides.values():
        fn()
    cpu, wall = {k: [] for k in sides}, {k: [] for k in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start)
    return {k: (min(cpu[k]), min(wall[k])) for k in sides}


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def cpu_timed(fn, *args):
    """(wall s, child CPU s, result): CPU time stays honest when the machine is busy."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, result = timed(fn, *args)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, result


def smk_env(threads=None):
    """Snakemake's jobs find this venv's python first (scripts and shell commands); threads: torch's threads
    in every process started (OMP_NUM_THREADS), else torch's default."""
    env = {**os.environ, "PATH": os.path.dirname(PYTHON) + os.pathsep + os.environ["PATH"]}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_cmd(args, cwd, env=None):
    proc = subprocess.run(args, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(args)}\n{proc.stdout[-4000:]}")
    return proc.stdout


def model_jobs(counts):
    """Jobs that load a model, from a job-stats dict."""
    return sum(n for rule, n in counts.items() if rule.startswith(MODEL_RULES))


def group_shards(counts):
    """{rule name without its shard number: jobs}."""
    grouped = {}
    for rule, n in counts.items():
        key = rule.rstrip("0123456789") if "_shard" in rule else rule
        grouped[key] = grouped.get(key, 0) + n
    return grouped


def fmt_ratio(x):
    return f"{x:.1f}x" if x < 10 else f"{x:.0f}x"


def mean(values):
    values = list(values)
    return sum(values) / len(values) if values else float("nan")

"""traitflow benchmarks: every ratio of docs/design.md ("Performance targets"), measured side by side in one run.

    python benchmarks/run.py --quick     # make bench       (CI-sized: a few minutes on 2 cores)
    python benchmarks/run.py --full      # make bench-full  (the target sizes)
    python benchmarks/run.py --quick --only depth planning   # issue 10's rows: real depth, planning

Prints one markdown table (paste it into docs/benchmarks.md). Ratios, not
absolute times, are the result: both sides of a ratio run in this process
(or its children) one right after the other, so machine load hits both.
In-process torch work runs on --threads threads (default 1) so that a busy
neighbour core does not make one side's thread pool stall.
"""

import argparse
import glob
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [HERE, os.path.join(REPO, "tests")]

import torch  # noqa: E402

from conftest import job_counts, make_workdir  # noqa: E402
from logit_lens import bench_lens  # noqa: E402
from original_method import original_method  # noqa: E402
from synthetic_experiment import (REAL_DEPTH_SPEC, fake_finished_run, make_real_size_experiment,  # noqa: E402
                                  make_synthetic_experiment)
from traitflow.capture import batches, capture, left_pad  # noqa: E402
from traitflow.demo import build_demo_model  # noqa: E402
from traitflow.generate import encode_prompt, generate  # noqa: E402
from traitflow.modeling import load_model, load_tokenizer  # noqa: E402
from traitflow.prompt_sets import default_prompt_files  # noqa: E402
from traitflow.prompts import read_prompts  # noqa: E402

# A random Gemma-2 a few hundred units wide with 8 layers; the window covers every sequence, as gemma-2's 4096 does.
BENCH_SPEC = {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 8, "num_attention_heads": 4,
              "num_key_value_heads": 2, "head_dim": 64, "sliding_window": 4096, "max_position_embeddings": 4096}

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
# Planning targets in seconds by experiment size (issue 10); other sizes are for information.
PLANNING_TARGETS = {(10, 200): 3.0, (30, 1000): 15.0}
# Rules whose jobs load a model (scripts that call traitflow.modeling.load_model); build_demo_model
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


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


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


def core_targets(workdir):
    """The all-layers outputs of every demo trait and prompt: the stages one_process.py also runs."""
    exp = os.path.join(workdir, "experiments", "demo")
    traits = sorted(d for d in os.listdir(exp) if os.path.isdir(os.path.join(exp, d, "extraction")))
    n = len(read_prompts(default_prompt_files(exp)[0]))
    return [f"experiments/demo/{t}/inference/residual_stream_activations/prompt_{i}.{ext}"
            for t in traits for i in range(n) for ext in ("pt", "json")]


def bench_workflow(table, tmp):
    print("cold demo workflow vs one process", flush=True)
    env = smk_env()
    wf = make_workdir(os.path.join(tmp, "workflow"))
    one = make_workdir(os.path.join(tmp, "one_process"))
    targets = core_targets(wf)
    smk, out = timed(run_cmd, [PYTHON, "-m", "snakemake", "--cores", "2", *targets], wf, env)
    single, _ = timed(run_cmd, [PYTHON, os.path.join(HERE, "one_process.py"), one], one, env)
    # What every job pays before its work: a fresh Python, torch, transformers and the model load.
    model_dir = os.path.join(wf, "models", "traitflow-demo-chat")  # the demo's shipped model
    startup, _ = timed(run_cmd, [PYTHON, "-c", "import sys; from traitflow.modeling import load_model, "
                                 "load_tokenizer; load_model(sys.argv[1], 'cpu'); load_tokenizer(sys.argv[1])",
                                 model_dir], REPO, env)
    counts = job_counts(out)
    n_traits, n_shards = counts["extract_vectors"], sum(1 for r in counts if r.startswith("generate_shard"))
    # Dependent waves on 2 cores: build, then extraction per trait, generation per shard, capture per shard
    # (one capture job serves every trait).
    waves = 1 + -(-n_traits // 2) + -(-n_shards // 2) + -(-n_shards // 2)
    jobs, ratio = sum(counts.values()), smk / single
    table.add(f"cold demo (build model, extract, generate, capture; {jobs} jobs) `snakemake --cores 2` "
              "vs one Python process", f"{smk:.1f} s", f"{single:.1f} s", f"{ratio:.2f}x", "<= 1.5x", ratio <= 1.5,
              f"each job is a fresh process paying {startup:.1f} s (Python, torch, transformers, model load) "
              f"before sub-second work; {waves} dependent waves on 2 cores: ~{waves * startup:.0f} s")


def cpu_timed(fn, *args):
    """(wall s, child CPU s, result): CPU time stays honest when the machine is busy."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, result = timed(fn, *args)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, result


def model_jobs(counts):
    """Jobs that load a model, from a job-stats dict."""
    return sum(n for rule, n in counts.items() if rule.startswith(MODEL_RULES))


def bench_planning(table, tmp, sizes):
    """Dry run and no-op rerun of synthetic experiments (REAL_RUN_CONFIG), and model-loading jobs per run."""
    for n_traits, n_prompts in sizes:
        print(f"dry run and no-op rerun: {n_traits} traits x {n_prompts} prompts", flush=True)
        # Vectors come from the synthetic experiment (probe only), so dynamics reuses the capture's method.
        workdir = make_synthetic_experiment(os.path.join(tmp, f"synthetic_{n_traits}x{n_prompts}"), "bench",
                                            n_traits, n_prompts, methods=("probe",), config=REAL_RUN_CONFIG)
        dry_run = [PYTHON, "-m", "snakemake", "-n", "--quiet", "rules"]
        # The first plan of an experiment checks every vector file (importing torch) and caches the verdicts
        # by size and mtime; every later plan reads the cache. The row is a later plan; the first is in why.
        cold, cold_cpu, _ = cpu_timed(run_cmd, dry_run, workdir)
        dry, dry_cpu, out = cpu_timed(run_cmd, dry_run, workdir)
        counts = job_counts(out)
        jobs = sum(counts.values())
        declared, listed = fake_finished_run(workdir, PYTHON)  # per-shard jobs' files and manifests, then --touch
        noop, noop_cpu, out = cpu_timed(run_cmd, [PYTHON, "-m", "snakemake", "--cores", "1"], workdir)
        target = PLANNING_TARGETS.get((n_traits, n_prompts))
        size = f"{n_traits} traits x {n_prompts} prompts"
        why = (f"{jobs} jobs declaring {declared} files, their manifests listing {listed}; CPU time is what load "
               "inflates least "
               "(causes: docs/benchmarks.md)")
        table.add(f"dry run, {size} ({jobs} jobs, single-layer off)", f"{dry:.1f} s ({dry_cpu:.1f} s CPU)", "-", "-",
                  f"< {target:g} s CPU" if target else "(for information)", dry_cpu < target if target else None,
                  f"{why}; the experiment's first plan: {cold:.1f} s ({cold_cpu:.1f} s CPU), torch imported once "
                  "to check the vectors")
        table.add(f"no-op rerun, {size}", f"{noop:.1f} s ({noop_cpu:.1f} s CPU)", "-", "-",
                  f"< {target:g} s CPU" if target else "(for information)",
                  noop_cpu < target and "Nothing to be done" in out if target else None,
                  why + "; plus one size check per file the manifests list")
        if (n_traits, n_prompts) == (10, 200):
            loads = model_jobs(counts)
            per_rule = ", ".join(f"{rule.rstrip('0123456789')}*: {n}" for rule, n in
                                 _group_shards(counts).items() if rule.startswith(MODEL_RULES))
            table.add(f"model-loading jobs, {size} (dry run, shards of 16)", str(loads), "about 426", "-",
                      "<= 40", loads <= 40,
                      f"{per_rule} (+ build_demo_model: {counts.get('build_demo_model', 0)}); one generation and one "
                      "capture job per shard serve every trait, whatever the number of traits")


def _group_shards(counts):
    """{rule name without its shard number: jobs}."""
    grouped = {}
    for rule, n in counts.items():
        key = rule.rstrip("0123456789") if "_shard" in rule else rule
        grouped[key] = grouped.get(key, 0) + n
    return grouped


def tree_files(root, skip=(".snakemake", "logs")):
    """{relative path: (bytes, mtime_ns)} of every file under root, less the top-level folders in skip."""
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == root:
            dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames:
            st = os.stat(os.path.join(dirpath, name))
            files[os.path.relpath(os.path.join(dirpath, name), root)] = (st.st_size, st.st_mtime_ns)
    return files


def written(before, after):
    """{path: bytes} of the files a run created or rewrote."""
    return {p: size for p, (size, mtime) in after.items() if before.get(p) != (size, mtime)}


def fmt_ratio(x):
    return f"{x:.1f}x" if x < 10 else f"{x:.0f}x"


def mean(values):
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def trait_bytes(exp_dir, traits, n_prompts):
    """Bytes of the traits' all-layers .pt + .json over prompts 0..n_prompts-1."""
    return sum(os.path.getsize(os.path.join(exp_dir, t, "inference", "residual_stream_activations", f"prompt_{i}.{ext}"))
               for t in traits for i in range(n_prompts) for ext in ("pt", "json"))


def capture_job_seconds(workdir, exp):
    """The capture jobs' own wall time from their Snakemake `benchmark:` files, when the rule has one."""
    files = glob.glob(os.path.join(workdir, "logs", exp, "benchmarks", "capture", "*.tsv"))
    if not files:
        return None
    total = 0.0
    for path in files:
        with open(path) as fh:
            header, row = fh.read().splitlines()[:2]
        total += float(row.split("\t")[header.split("\t").index("s")])
    return total


def only_rules(counts, prefixes):
    return counts and all(rule.startswith(prefixes) for rule in counts)


def bench_depth(table, tmp, mode, threads):
    """Issue 10 item 7: gemma-2-2b's depth (26 layers, 8 heads) at a narrow width, through the workflow.

    One workdir: build the model (untimed), then generation + capture of every trait (the end-to-end run,
    files written), then the capture stage alone for 1 trait (`--config traits=[first]`: its params change,
    generation's do not) and for every trait again, side by side. Then the original method in a fresh
    process on a few (trait, prompt) pairs of the same prompts and response lengths, with its seed files.
    Every process of both sides runs torch on `threads` threads (OMP_NUM_THREADS): with 2 threads on 2
    busy cores, one stalled thread made a pass 30x slower (measured), which would decide the ratio.
    """
    d = MODES[mode]["depth"]
    n_traits, n_prompts, exp = d["traits"], d["prompts"], "depth"
    print(f"real depth: {n_traits} traits x {n_prompts} prompts x ({d['prompt_tokens']} + {d['new_tokens']}) tokens, "
          f"{REAL_DEPTH_SPEC['num_hidden_layers']} layers", flush=True)
    # Greedy: a random model sampled at 0.7 stops at <eos> after ~160 tokens on average (measured); greedy
    # never picks it here, so every response has new_tokens tokens (checked below).
    workdir = make_real_size_experiment(
        os.path.join(tmp, "depth"), exp, n_traits, n_prompts, d["prompt_tokens"], d["new_tokens"],
        config={"generation": {"max_new_tokens": d["new_tokens"], "temperature": 0.0},
                "capture": {"prompts_per_job": 16}, **REAL_RUN_CONFIG, "report": {"max_prompts": 0}})
    env, exp_dir = smk_env(threads), os.path.join(workdir, "experiments", exp)
    traits = sorted(t for t in os.listdir(exp_dir) if os.path.isdir(os.path.join(exp_dir, t, "extraction")))
    smk = [PYTHON, "-m", "snakemake", "--cores", "2"]
    until = ["--until", *(f"capture_shard{k}" for k in range(-(-n_prompts // 16)))]
    run_cmd(smk + ["--until", "build_demo_model"], workdir, env)
    model_dir = glob.glob(os.path.join(workdir, "resources", "models", "traitflow-demo-*"))[0]  # one per spec

    # End to end: generation + capture of every trait, as a user runs it.
    before = tree_files(workdir)
    e2e, e2e_cpu, out = cpu_timed(run_cmd, smk + until, workdir, env)
    ours = written(before, tree_files(workdir))
    e2e_counts = job_counts(out)
    responses = [json.load(open(os.path.join(exp_dir, "inference", "responses", f"prompt_{i}.json")))
                 for i in range(n_prompts)]
    n_prompt_tok = mean(r["prompt"]["n_tokens"] for r in responses)
    n_resp_tok = mean(r["response"]["n_tokens"] for r in responses)
    print(f"  end to end {e2e:.1f} s, jobs {e2e_counts}; mean tokens {n_prompt_tok:.1f} + {n_resp_tok:.1f}", flush=True)

    # The capture stage alone, 1 trait then every trait, interleaved, best of stage_repeats each (generation
    # kept: each run changes the capture's params, so only capture jobs may run).
    stage = {}
    for _ in range(d["stage_repeats"]):
        for label, extra in (("one", ["--config", f"traits=[{traits[0]}]"]), ("all", [])):
            wall, cpu, out = cpu_timed(run_cmd, smk + extra + until, workdir, env)
            counts = job_counts(out)
            if not only_rules(counts, ("capture_shard",)):
                raise SystemExit(f"depth benchmark: the capture-stage run ran {counts}, not only capture jobs")
            job = capture_job_seconds(workdir, exp)
            print(f"  capture stage, {label}: {wall:.1f} s, {cpu:.1f} s CPU (job {job})", flush=True)
            best = stage.get(label, (float("inf"), None, None, float("inf")))
            stage[label] = (min(wall, best[0]), min(job, best[1]) if job and best[1] else job,
                            trait_bytes(exp_dir, traits[:1] if label == "one" else traits, n_prompts),
                            min(cpu, best[3]))
    shared = [os.path.getsize(p) for p in glob.glob(os.path.join(exp_dir, "inference", "shared", "*.safetensors"))]
    response_bytes = [os.path.getsize(os.path.join(exp_dir, "inference", "responses", f"prompt_{i}.json"))
                      for i in range(n_prompts)]
    pt_bytes = mean(os.path.getsize(p) for p in glob.glob(os.path.join(exp_dir, "*", "inference",
                                                                       "residual_stream_activations", "*.pt")))
    json_bytes = mean(os.path.getsize(p) for p in glob.glob(os.path.join(exp_dir, "*", "inference",
                                                                         "residual_stream_activations", "*.json")))

    # The original method: a fresh process on a few pairs, scaled linearly to traits x prompts.
    pairs = min(d["original_pairs"], n_prompts)
    orig_wall, _, out = cpu_timed(run_cmd, [PYTHON, os.path.join(HERE, "original_method.py"), model_dir, exp_dir,
                                     os.path.join(tmp, "original"), "--pairs", str(pairs)], REPO, env)
    orig = json.loads(out.strip().splitlines()[-1])
    per_pair = mean(p["seconds"] for p in orig["pairs"])
    orig_total = orig["startup_s"] + per_pair * n_traits * n_prompts
    orig_cpu = orig["startup_cpu_s"] + mean(p["cpu_s"] for p in orig["pairs"]) * n_traits * n_prompts
    orig_pair_bytes = mean(p["bytes"] for p in orig["pairs"])
    orig_files = sum(p["files"] for p in orig["pairs"]) / pairs * n_traits * n_prompts
    print(f"  original: {orig_wall:.1f} s for {pairs} pairs: {orig}", flush=True)

    shape = (f"{REAL_DEPTH_SPEC['num_hidden_layers']} layers x {REAL_DEPTH_SPEC['num_attention_heads']} heads, "
             f"width {REAL_DEPTH_SPEC['hidden_size']}, {n_prompts} prompts x ({n_prompt_tok:.0f} + {n_resp_tok:.0f} "
             "tokens)")
    mb = 1e6
    extra = (stage["all"][2] - stage["one"][2]) / (n_traits - 1) / n_prompts
    table.add(f"bytes written per additional trait per prompt (.pt + .json), {shape}", f"{extra / mb:.3f} MB",
              f"{orig_pair_bytes / mb:.1f} MB", f"{fmt_ratio(orig_pair_bytes / extra)} smaller", "<= 0.5 MB",
              extra <= 0.5 * mb,
              f"({stage['all'][2]} - {stage['one'][2]} bytes) / {n_traits - 1} / {n_prompts}: a .pt of "
              f"{pt_bytes / mb:.3f} MB (float32 projections [T, L, 3] + metadata) and a .json of "
              f"{json_bytes / mb:.3f} MB (the same at 4 significant digits); baseline: the original's .pt + .json "
              "per (trait, prompt), attention included")
    table.add(f"shared data per prompt (what the viewer reads), {shape}",
              f"{mean(shared) / mb:.2f} MB (+ {mean(response_bytes) / mb:.3f} MB response)", "-", "-", "<= 15 MB",
              mean(shared) + mean(response_bytes) <= 15 * mb,
              "inference/shared/prompt_i.safetensors: head-mean attention as uint16 causal rows "
              "(L x T(T+1)/2), residual norms, logit lens top-5; once per prompt for every trait")
    one, every = stage["one"], stage["all"]
    job_times = (f"; the capture jobs' own time (Snakemake benchmark file): {every[1]:.1f} s vs {one[1]:.1f} s = "
                 f"{every[1] / one[1]:.2f}x" if one[1] and every[1] else "")
    table.add(f"capture stage, {n_traits} traits vs 1 trait, {shape}",
              f"{every[0]:.1f} s ({every[3]:.1f} s CPU)", f"{one[0]:.1f} s ({one[3]:.1f} s CPU)",
              f"{every[0] / one[0]:.2f}x (CPU {every[3] / one[3]:.2f}x)", "<= 1.5x", every[0] / one[0] <= 1.5,
              f"best of {d['stage_repeats']} interleaved `snakemake --cores 2 --until capture_shard*` runs with "
              "generation done (Snakemake start-up, the job's python, torch and model load, one teacher-forced "
              f"pass, the writes){job_times}; the pass projects every trait at once: the extra traits cost "
              "their files' encoding and writing")
    ours_bytes, loads = sum(ours.values()), model_jobs(e2e_counts)
    ratio = orig_total / e2e
    table.add(f"end to end: generation + all-layers capture of {n_traits} traits, {shape}, files written, "
              "vs the original method", f"{e2e:.1f} s ({e2e_cpu:.1f} s CPU)",
              f"{orig_total:.0f} s ({orig_cpu:.0f} s CPU), scaled from {pairs} (trait, prompt) pair(s)",
              f"{fmt_ratio(ratio)} faster (CPU {fmt_ratio(orig_cpu / e2e_cpu)})", ">= 20x", ratio >= 20,
              f"torch on {threads} thread(s) in every process of both sides; "
              f"ours: `snakemake --cores 2` ({loads} model-loading jobs: "
              f"{', '.join(f'{r} {n}' for r, n in _group_shards(e2e_counts).items())}), {len(ours)} files, "
              f"{ours_bytes / mb:.0f} MB; the original: {per_pair:.1f} s per (trait, prompt) measured on {pairs} "
              f"pair(s) (a full recompute per token, {orig['pairs'][0]['capture_s']:.1f} s, then its .pt + .json, "
              f"{orig['pairs'][0]['write_s']:.1f} s) x {n_traits * n_prompts} + {orig['startup_s']:.1f} s start-up, "
              f"{orig_files:.0f} files, {orig_pair_bytes * n_traits * n_prompts / 1e9:.1f} GB")


def capture_job_memory(model_dir, out, n_prompts, response_tokens):
    """(RSS once loaded, peak RSS after) in MiB of a fresh process capturing n_prompts x (32 + response_tokens)."""
    os.makedirs(out)
    stdout = run_cmd([PYTHON, os.path.join(HERE, "capture_job.py"), model_dir, out, str(n_prompts), "32",
                      str(response_tokens), "8"], REPO)
    loaded, peak = map(float, stdout.strip().splitlines()[-1].split())
    return loaded, peak


def bench_memory(table, model_dir, tmp, grid):
    """Peak RSS of one capture job above its loaded model, as the shard grows in prompts and in tokens."""
    print("peak memory of one capture job", flush=True)
    extra, loaded = {}, []
    for n_prompts, tokens in grid:
        base, peak = capture_job_memory(model_dir, os.path.join(tmp, f"mem_{n_prompts}_{tokens}"), n_prompts, tokens)
        extra[n_prompts, tokens] = peak - base
        loaded.append(base)
        print(f"  {n_prompts} prompts x (32 + {tokens}) tokens: {base:.0f} MiB loaded, "
              f"+{extra[n_prompts, tokens]:.0f} MiB peak", flush=True)
    grows = all(extra[a] <= extra[b] + 2 for a in extra for b in extra if a[0] <= b[0] and a[1] <= b[1])
    cells = ", ".join(f"{p}x{t}: +{mb:.0f}" for (p, t), mb in extra.items())
    table.add(f"peak RSS of one capture job above its loaded model (~{min(loaded):.0f} MiB), by prompts per job "
              "x response tokens", cells + " MiB", "-", "-", "grows with the shard, not the experiment", grows,
              "a job reads only its shard's responses and holds its shard's captures (attention: "
              "layers x T^2 floats per prompt) until written")


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
    rows = ["generate", "capture", "workflow", "planning", "memory", "depth", "lens"]
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
    print(f"\n{mode} mode, {machine()}, torch threads {args.threads}, {time.perf_counter() - start:.0f} s in all\n")
    print(table.markdown())


if __name__ == "__main__":
    main()

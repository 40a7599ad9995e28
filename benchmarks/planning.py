"""Row group `planning`: dry run and no-op rerun of synthetic experiments, and model-loading jobs per run."""

import os

# harness first: importing it puts benchmarks/ and tests/ (conftest) on sys.path
from harness import MODEL_RULES, PYTHON, REAL_RUN_CONFIG, cpu_timed, group_shards, model_jobs, run_cmd
from conftest import job_counts
from synthetic_experiment import fake_finished_run, make_synthetic_experiment

# Planning targets in seconds by experiment size (issue 10); other sizes are for information.
PLANNING_TARGETS = {(10, 200): 3.0, (30, 1000): 15.0}


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
                                 group_shards(counts).items() if rule.startswith(MODEL_RULES))
            table.add(f"model-loading jobs, {size} (dry run, shards of 16)", str(loads), "about 426", "-",
                      "<= 40", loads <= 40,
                      f"{per_rule} (+ build_demo_model: {counts.get('build_demo_model', 0)}); one generation and one "
                      "capture job per shard serve every trait, whatever the number of traits")

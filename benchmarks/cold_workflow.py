"""Row group `workflow`: the cold demo workflow (`snakemake --cores 2`) vs the same stages in one process."""

import os

# harness first: importing it puts benchmarks/ and tests/ (conftest) on sys.path
from harness import HERE, PYTHON, REPO, run_cmd, smk_env, timed
from conftest import job_counts, make_workdir
from traitflow.experiment.prompt_sets import default_prompt_files
from traitflow.experiment.prompts import read_prompts


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
    startup, _ = timed(run_cmd, [PYTHON, "-c", "import sys; from traitflow.model.modeling import load_model, "
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

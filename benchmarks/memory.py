"""Row group `memory`: peak RSS of one capture job above its loaded model, as the shard grows."""

import os

from harness import HERE, PYTHON, REPO, run_cmd


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

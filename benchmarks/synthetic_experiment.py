"""A runnable workdir holding a synthetic experiment: N traits with random vectors, M prompts.

For planning and scale benchmarks (dry runs, no-op reruns): the traits bring their own
vectors (no extraction examples), sized for the demo model unless told otherwise.

    .venv/bin/python benchmarks/synthetic_experiment.py /tmp/syn --traits 10 --prompts 200
    cd /tmp/syn && /work/main/.venv/bin/snakemake -n --quiet rules
"""

import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from conftest import make_workdir  # noqa: E402
from traitflow.demo.spec import DEFAULT_SPEC  # noqa: E402
from traitflow.core.formats import save_pt  # noqa: E402
from traitflow.experiment.vectors import vector_filename  # noqa: E402

WORDS = "the model reads a prompt and writes an answer about bread rivers dragons taxes and the moon".split()


def synthetic_prompt(i, rng):
    """Prompts of varied length, so capture batches see real padding."""
    n_words = int(torch.randint(4, 24, (1,), generator=rng))
    picks = torch.randint(len(WORDS), (n_words,), generator=rng).tolist()
    return f"Question {i}: " + " ".join(WORDS[k] for k in picks) + "?"


def make_synthetic_experiment(root, name, n_traits, n_prompts, hidden_size=DEFAULT_SPEC["hidden_size"],
                              layer=DEFAULT_SPEC["num_hidden_layers"] // 2, methods=("probe", "mean_diff"), seed=0,
                              config=None):
    """Write a workflow copy at root whose config runs experiments/{name}; return root.

    Each trait_{k} gets a random {method}_layer{layer}.pt of hidden_size floats per method
    (probe for capture, mean_diff too because the default dynamics.methods reads it).
    """
    # Steering needs labelled prompts, which a synthetic experiment has not: off, whatever the demo's config says.
    make_workdir(root, {"experiment": name, "model": "traitflow-demo", "steering": {"enabled": False},
                        **(config or {})})  # the model is built by the workflow
    exp = os.path.join(root, "experiments", name)
    rng = torch.Generator().manual_seed(seed)
    for k in range(n_traits):
        vectors = os.path.join(exp, f"trait_{k:02d}", "extraction", "vectors")
        os.makedirs(vectors, exist_ok=True)
        for method in methods:
            save_pt(torch.randn(hidden_size, generator=rng), os.path.join(vectors, vector_filename(method, layer)))
    with open(os.path.join(exp, "inference_prompts.txt"), "w", encoding="utf-8") as fh:
        fh.writelines(synthetic_prompt(i, rng) + "\n" for i in range(n_prompts))
    return root


# gemma-2-2b's depth and heads (26 layers, 8 query and 4 key-value heads) at a narrow width: attention
# and viewer sizes grow with layers x tokens^2, not with width (docs/design.md, "Scale facts"), so this
# reproduces a real model's file and page sizes at a fraction of the compute. The window covers
# every sequence, as gemma-2's 4096 does.
REAL_DEPTH_SPEC = {"num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 8,
                   "hidden_size": 64, "intermediate_size": 128, "sliding_window": 4096, "max_position_embeddings": 1024}


def prompt_of_length(tokenizer, n_tokens, i, chat_template=True, extra=""):
    """A prompt text that encodes to exactly n_tokens (chat template included), built from the demo's words."""
    from traitflow.demo.spec import _CORPUS
    from traitflow.model.generate import encode_prompt

    words = " ".join(_CORPUS).split()
    start = (17 * i) % len(words)
    pick = [words[(start + k) % len(words)] for k in range(4 * n_tokens)]

    def text(n_words):
        return extra + f"Question {i}: " + " ".join(pick[:n_words])
    lo, hi = 0, len(pick)  # the largest word count that stays within n_tokens, then pad with single tokens
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(encode_prompt(tokenizer, text(mid), chat_template)) <= n_tokens:
            lo = mid
        else:
            hi = mid - 1
    out = text(lo)
    while len(encode_prompt(tokenizer, out, chat_template)) < n_tokens:
        out += "!"
    if len(encode_prompt(tokenizer, out, chat_template)) != n_tokens:
        raise ValueError(f"could not build a prompt of exactly {n_tokens} tokens")
    return out


def make_real_size_experiment(root, name="realsize", n_traits=10, n_prompts=3, prompt_tokens=300, new_tokens=200,
                              spec=None, extras=None, config=None):
    """A workflow copy at root whose experiment has a model of gemma-2-2b's depth: the viewer's real-size case.

    The demo model builder makes a random Gemma-2 with REAL_DEPTH_SPEC (or spec); each of n_traits
    traits gets a random probe vector at the middle layer (no extraction); prompt i encodes to
    exactly prompt_tokens tokens with the chat template (extras[i], when given, starts it: markup,
    say). Generation is greedy: this random model (REAL_DEPTH_SPEC, the demo's seed) then never
    picks a stop token within 200 steps, so every response has new_tokens tokens; another spec
    may stop earlier (check n_tokens in the response files). Extraction, dynamics' extra methods
    and the report are left out; the single-layer deep dive covers the middle layer.
    """
    from traitflow.demo.spec import DEFAULT_SPEC, build_tokenizer

    spec = {**REAL_DEPTH_SPEC, **(spec or {})}
    layer = spec["num_hidden_layers"] // 2
    settings = {
        "demo_model": spec,
        "generation": {"max_new_tokens": new_tokens, "temperature": 0.0, "batch_size": n_prompts},
        "capture": {"prompts_per_job": n_prompts, "batch_size": n_prompts},
        "dynamics": {"methods": ["auto"]},
        "single_layer": {"layers": [layer]},
        "report": {"max_prompts": 0},
        **(config or {}),
    }
    make_synthetic_experiment(root, name, n_traits, 0, hidden_size=spec["hidden_size"], layer=layer,
                              methods=("probe",), config=settings)
    tokenizer = build_tokenizer(spec.get("vocab_size", DEFAULT_SPEC["vocab_size"]))
    extras = extras or {}
    prompts = [prompt_of_length(tokenizer, prompt_tokens, i, extra=extras.get(i, "")) for i in range(n_prompts)]
    with open(os.path.join(root, "experiments", name, "inference_prompts.txt"), "w", encoding="utf-8") as fh:
        fh.writelines(p + "\n" for p in prompts)
    return root


def _write_planned_files(root):
    """Parse the workflow at root (Snakemake's API, no DAG) and write every per-shard job's files, empty, with
    its manifest listing them as a finished job would: sizes, sha256 and the traits it served."""
    from pathlib import Path

    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import OutputSettings, ResourceSettings

    from traitflow.core.formats import save_json
    from traitflow.core.manifests import FileRecord, manifest_json, sha256_file

    empty_sha = None
    listed = 0
    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=Path(root, "Snakefile"),
                                workdir=Path(root))._workflow
        for rule in workflow.rules:
            if "outputs" not in rule.params.keys() or "manifest" not in rule.output.keys():
                continue
            files = [f for group in rule.params.outputs.values() for f in group]
            for f in files:
                os.makedirs(os.path.dirname(f), exist_ok=True)
                open(f, "w").close()
                empty_sha = empty_sha or sha256_file(f)
            traits = rule.params.traits if "traits" in rule.params.keys() else None
            names = None if traits is None else [t if isinstance(t, str) else t["name"] for t in traits]
            save_json(manifest_json(rule.name, {}, [FileRecord(f, 0, empty_sha) for f in files], names),
                      str(rule.output.manifest), indent=1)
            listed += len(files)
    return listed


def fake_finished_run(root, python=sys.executable):
    """Make root look like a finished run, cheaply: every per-shard job's files (empty) and manifest, then every
    other declared output as an empty file, then `snakemake --touch` to put mtimes in DAG order.
    Returns (declared outputs, files the manifests list): what a no-op rerun then checks."""
    import subprocess

    def snakemake(*args):
        return subprocess.run([python, "-m", "snakemake", *args, "--cores", "1"], cwd=root, check=True, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout

    listed = int(subprocess.run([python, os.path.abspath(__file__), root, "--fake-run"], check=True, text=True,
                                stdout=subprocess.PIPE).stdout.split()[-1])
    declared = 0
    for line in snakemake("--summary").splitlines()[1:]:
        if "\t" not in line:
            continue
        declared += 1
        path = os.path.join(root, line.split("\t")[0])
        if os.path.exists(path):
            continue
        if "." not in os.path.basename(path):  # a directory() output
            os.makedirs(path)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "w").close()
    snakemake("--touch")
    return declared, listed


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="directory to create (a runnable workflow copy)")
    ap.add_argument("--name", default="synthetic", help="experiment name (folder under experiments/)")
    ap.add_argument("--traits", type=int, default=10)
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--hidden-size", type=int, default=DEFAULT_SPEC["hidden_size"])
    ap.add_argument("--layer", type=int, default=DEFAULT_SPEC["num_hidden_layers"] // 2)
    ap.add_argument("--fake-run", action="store_true",
                    help="in an existing ROOT, write every per-shard job's files and manifest (see fake_finished_run)")
    args = ap.parse_args(argv)
    if args.fake_run:
        print(f"files listed in manifests: {_write_planned_files(os.path.abspath(args.root))}")
        return
    make_synthetic_experiment(args.root, args.name, args.traits, args.prompts, args.hidden_size, args.layer)
    print(f"{args.root}: experiments/{args.name} with {args.traits} traits x {args.prompts} prompts")


if __name__ == "__main__":
    main()

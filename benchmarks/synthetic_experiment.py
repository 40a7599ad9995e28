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
from traitflow.demo import DEFAULT_SPEC  # noqa: E402
from traitflow.formats import save_pt  # noqa: E402
from traitflow.vectors import vector_filename  # noqa: E402

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
    make_workdir(root, {"experiment": name, **(config or {})})
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="directory to create (a runnable workflow copy)")
    ap.add_argument("--name", default="synthetic", help="experiment name (folder under experiments/)")
    ap.add_argument("--traits", type=int, default=10)
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--hidden-size", type=int, default=DEFAULT_SPEC["hidden_size"])
    ap.add_argument("--layer", type=int, default=DEFAULT_SPEC["num_hidden_layers"] // 2)
    args = ap.parse_args(argv)
    make_synthetic_experiment(args.root, args.name, args.traits, args.prompts, args.hidden_size, args.layer)
    print(f"{args.root}: experiments/{args.name} with {args.traits} traits x {args.prompts} prompts")


if __name__ == "__main__":
    main()

"""The logit lens at gemma-2-2b's width and vocabulary (issue 20), measured side by side.

A random Gemma-2 with gemma-2-2b's width, heads and vocabulary (hidden 2304, MLP 9216,
8 heads of 256, 4 KV heads, vocabulary 256,000) and --layers layers, one sequence of
--tokens tokens, torch on --threads threads. Four sides, interleaved, best of --repeats
in CPU time (what a busy machine inflates least; wall time is printed too):

  plain     a plain eager forward pass (logits of the last token only, as capture runs it)
  capture   traitflow.model.capture.capture without the lens (all layers x 3 points, attention, 5 vectors)
  lens      the same with the lens (top-5 at every layer)
  bare      the plain forward + the lens' matmuls alone: [T, 2304] @ [2304, 256000] per layer

Target: lens <= 1.15x bare. The unembedding is the lens' cost; everything else is waste.

    .venv/bin/python benchmarks/logit_lens.py                          # what `make bench` runs (~2 min, 3 GB RAM)
    .venv/bin/python benchmarks/logit_lens.py --vocab-size 32000 --tokens 60 --repeats 1   # seconds-long smoke
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gpu_smoke import build_model  # noqa: E402
from harness import best_cpu  # noqa: E402
from traitflow.model.capture import capture  # noqa: E402

TARGET = 1.15


def plain_forward(model, ids):
    with torch.no_grad():
        model(input_ids=ids, use_cache=False, logits_to_keep=1)


def bare_lens(model, ids, hidden):
    """The plain forward, then nothing but the unembedding matmul per layer."""
    plain_forward(model, ids)
    weight = model.get_output_embeddings().weight
    with torch.no_grad():
        for _ in range(model.config.num_hidden_layers):
            hidden @ weight.T


def measure(n_layers=2, tokens=300, vocab_size=256000, repeats=3, threads=1, seed=0):
    """{side: best CPU seconds}."""
    torch.set_num_threads(threads)
    model = build_model("cpu", torch.float32, n_layers, vocab_size, seed)
    g = torch.Generator().manual_seed(seed)
    sequence = [2] + torch.randint(3, vocab_size, (tokens - 1,), generator=g).tolist()
    ids = torch.tensor([sequence])
    hidden = torch.randn(tokens, model.config.hidden_size, generator=g)
    vectors = torch.randn(5, model.config.hidden_size, generator=g)
    sides = {
        "plain": lambda: plain_forward(model, ids),
        "capture": lambda: capture(model, [sequence], vectors, batch_size=1),
        "lens": lambda: capture(model, [sequence], vectors, batch_size=1, lens_top_k=5),
        "bare": lambda: bare_lens(model, ids, hidden),
    }
    return {k: cpu for k, (cpu, _) in best_cpu(sides, repeats).items()}


def bench_lens(table, repeats, threads=1, **shape):
    """The `make bench` row: capture with the lens vs the plain forward + the lens' matmuls done bare."""
    n_layers, tokens = shape.get("n_layers", 2), shape.get("tokens", 300)
    print(f"logit lens: gemma-2-2b width and vocabulary, {n_layers} layers, {tokens} tokens", flush=True)
    t = measure(repeats=repeats, threads=threads, **shape)
    ratio = t["lens"] / t["bare"]
    per_layer = (t["lens"] - t["capture"]) / n_layers
    block = t["plain"] / n_layers
    table.add(f"capture with the logit lens (top-5, every layer) vs a plain forward + the lens' bare matmuls, "
              f"gemma-2-2b width and vocabulary, {n_layers} layers, {tokens} tokens",
              f"{t['lens'] * 1e3:.0f} ms CPU", f"{t['bare'] * 1e3:.0f} ms CPU", f"{ratio:.2f}x", f"<= {TARGET}x",
              ratio <= TARGET,
              f"plain forward {t['plain'] * 1e3:.0f} ms (1.00x), capture without the lens "
              f"{t['capture'] / t['plain']:.2f}x, with it {t['lens'] / t['plain']:.2f}x, plain + bare matmuls "
              f"{t['bare'] / t['plain']:.2f}x; one lens layer costs {per_layer * 1e3:.0f} ms = "
              f"{per_layer / block:.1f} Gemma-2 blocks; torch on {threads} thread(s), best of {repeats}")
    return t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=300)
    ap.add_argument("--vocab-size", type=int, default=256000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    from harness import Table

    table = Table()
    bench_lens(table, args.repeats, args.threads, n_layers=args.layers, tokens=args.tokens,
               vocab_size=args.vocab_size)
    print(table.markdown())


if __name__ == "__main__":
    main()

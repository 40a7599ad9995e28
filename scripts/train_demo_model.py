"""Train the shipped demo chat model and fine-tune its helpful variant: `make demo-model` (a few minutes on 2 CPU cores).

Usage: python scripts/train_demo_model.py [--out DIR] [--steps N] [--helpful-out DIR]
The fine-tune starts from the chat model just written to --out (README "Model variants").
"""

import argparse
import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from traitflow.demo.train import HELPFUL_DIR, SHIPPED_DIR, finetune, train  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=SHIPPED_DIR, help=f"output folder (default {SHIPPED_DIR})")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the shipped model's)")
    parser.add_argument("--helpful-out", default=HELPFUL_DIR, help=f"the fine-tuned variant's folder (default {HELPFUL_DIR})")
    args = parser.parse_args()
    log = functools.partial(print, flush=True)
    report(args.out, train(args.out, args.steps, log=log))
    report(args.helpful_out, finetune(args.out, args.helpful_out, log=log))


def report(out, record):
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"wrote {out}: {record['parameters']} parameters, final loss {record['final_loss']}, "
          f"{size / 2**20:.2f} MB, {record['seconds']:.0f} s")


if __name__ == "__main__":
    main()

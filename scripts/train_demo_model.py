"""Train the shipped demo chat model: `make demo-model` (a few minutes on 2 CPU cores; README "Quickstart").

Usage: python scripts/train_demo_model.py [--out DIR] [--steps N]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from traitflow.demo.train import SHIPPED_DIR, train  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=SHIPPED_DIR, help=f"output folder (default {SHIPPED_DIR})")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the shipped model's)")
    args = parser.parse_args()
    record = train(args.out, args.steps, log=lambda line: print(line, flush=True))
    size = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"wrote {args.out}: {record['parameters']} parameters, final loss {record['final_loss']}, "
          f"{size / 2**20:.2f} MB, {record['seconds']:.0f} s")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Write the seed scripts' full layout (attention included) for per-trait capture files.

usage: python scripts/export_seed_format.py FILE.pt... --out DIR [--json]

Each FILE (an all-layers or single-layer per-trait .pt) becomes DIR/<its path with '/' as '__'>.pt
holding traitflow.load_seed_format(FILE), and with --json a .json mirror too. Our own files keep
trait-independent data once per prompt; this is for tools that read the seed layout from disk.
"""

import argparse
import os
import sys

from traitflow import load_seed_format
from traitflow.errors import TraitflowError
from traitflow.formats import save_json, save_pt, to_json


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="per-trait .pt files")
    ap.add_argument("--out", required=True, help="folder to write the seed-layout files into")
    ap.add_argument("--json", action="store_true", help="also write the .json mirror (large: attention in text)")
    args = ap.parse_args(argv)
    failed = 0
    for path in args.files:
        name = os.path.normpath(path).lstrip(os.sep).replace(os.sep, "__")
        target = os.path.join(args.out, name)
        try:
            record = load_seed_format(path)
        except (TraitflowError, OSError, KeyError) as err:
            print(f"{path}: cannot export: {err}", file=sys.stderr)
            failed += 1
            continue
        save_pt(record, target)
        if args.json:
            save_json(to_json(record), target.removesuffix(".pt") + ".json")
        print(target)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

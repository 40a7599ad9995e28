#!/usr/bin/env python
"""Write captures in the original project's nested layout, attention included, for its scripts and viewer.

usage: python scripts/export_seed_format.py --experiment EXP --out DIR [--trait T ...] [--set S ...]
                                            [--prompt I ...] [--no-json] [--no-single-layer]
       python scripts/export_seed_format.py FILE.pt ... --out DIR [--no-json]

Writes DIR/EXP/{category?}/{trait}/inference/residual_stream_activations/{set?}/prompt_{i}.pt and .json
(and layer_internal_states/.../prompt_{i}_layer{L}), where i is the prompt's index within its set,
and prints every file written, then one summary line. docs/formats.md describes both layouts.
DIR must be a folder of its own: one inside experiments/ (or the workflow's other folders) is refused.
"""

import argparse
import os
import sys

from traitflow.core.confine import check_experiment, check_export_folder
from traitflow.core.errors import TraitflowError
from traitflow.outputs.seed_export import experiment_files, experiment_of, export_file


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", help="per-trait .pt files (instead of --experiment)")
    ap.add_argument("--experiment", help="export every capture of experiments/EXPERIMENT (or those chosen)")
    ap.add_argument("--out", required=True, help="folder to write EXPERIMENT/... into")
    ap.add_argument("--trait", action="append", help="only this trait (TRAIT or CATEGORY/TRAIT; repeatable)")
    ap.add_argument("--set", action="append", help="only this prompt set ('default': inference_prompts; repeatable)")
    ap.add_argument("--prompt", action="append", type=int, help="only this prompt index within its set (repeatable)")
    ap.add_argument("--no-json", action="store_true", help="skip the .json mirrors (large: attention as text)")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old commands
    ap.add_argument("--no-single-layer", action="store_true", help="skip the single-layer deep-dive files")
    args = ap.parse_args(argv)
    if bool(args.files) == bool(args.experiment):
        ap.error("give either FILE.pt ... or --experiment EXP")
    try:
        if args.experiment:
            exp_dir = os.path.join("experiments", check_experiment(args.experiment))
            files = [(f, exp_dir) for f in experiment_files(exp_dir, args.trait, args.set, args.prompt,
                                                            not args.no_single_layer)]
        else:
            files = [(f, experiment_of(f)) for f in args.files]
        # never over the captures it reads (`--out experiments`), nor into a file
        check_export_folder(args.out, sources={os.path.dirname(exp_dir) for _, exp_dir in files})
    except TraitflowError as err:
        print(f"traitflow export: {err}", file=sys.stderr)
        return 1
    written, failed = [], 0
    for path, exp_dir in files:
        try:
            for target in export_file(path, exp_dir, args.out, not args.no_json):
                print(target)
                written.append(target)
        except (TraitflowError, OSError, KeyError) as err:
            print(f"{path}: cannot export: {err}", file=sys.stderr)
            failed += 1
    print(f"exported {len(files) - failed} capture file(s) as {len(written)} file(s) under {args.out}"
          + (f"; {failed} failed (above)" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Outputs of prompts no longer in the experiment: found for the end-of-run summary, removed by `make clean`.

Per-prompt files are named prompt_{i} (the default set) or {set}/prompt_{i} (a named set) in
the folders below. After a prompt is removed from its file, or a set's file is deleted, its old
files stay on disk and no rule owns them: Snakemake neither rebuilds nor deletes them. This
lists every file whose (set, index) the experiment's prompt files no longer have.

    python -m traitflow.plan.orphans EXP           # list them
    python -m traitflow.plan.orphans EXP --delete  # remove them (make clean EXP=... does too)
"""

import argparse
import glob
import os
import re
import sys

SHARED_FOLDERS = ("responses", "shared", "layer_internal_states")  # experiments/{exp}/inference/...
TRAIT_FOLDERS = ("residual_stream_activations", "layer_internal_states", "dynamics")  # .../{trait}/inference/...
PROMPT_FILE = re.compile(r"^prompt_(\d+)(?:_layer\d+)?\.(?:json|pt|safetensors)$")
DEFAULT_SET = "default"


def _output_folders(exp_dir):
    folders = [os.path.join(exp_dir, "inference", f) for f in SHARED_FOLDERS]
    for inference in glob.glob(os.path.join(glob.escape(exp_dir), "*", "inference")) + glob.glob(
            os.path.join(glob.escape(exp_dir), "*", "*", "inference")):
        if os.path.relpath(inference, exp_dir).split(os.sep)[0] != "inference":
            folders += [os.path.join(inference, f) for f in TRAIT_FOLDERS]
    return [f for f in folders if os.path.isdir(f)]


def prompt_outputs(exp_dir):
    """[(path, set, index)] for every per-prompt output file of the experiment on disk."""
    found = []
    for folder in _output_folders(exp_dir):
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=False):  # a named set's folder
                found += [(os.path.join(entry.path, f), entry.name, int(m[1]))
                          for f in sorted(os.listdir(entry.path)) if (m := PROMPT_FILE.match(f))]
            elif m := PROMPT_FILE.match(entry.name):
                found.append((entry.path, DEFAULT_SET, int(m[1])))
    return found


def orphan_outputs(exp_dir, counts):
    """[(path, set, index)] of prompts the experiment no longer has. counts: {set: number of prompts, or
    None where the set's file cannot be read now} over every set the experiment has
    (traitflow.experiment.prompt_sets.experiment_prompt_counts); a set with None is never called an orphan."""
    if counts is None:
        return []
    return [(path, name, i) for path, name, i in prompt_outputs(exp_dir)
            if counts.get(name, 0) is not None and i >= counts.get(name, 0)]


def describe(orphans, exp_dir):
    """One line naming the orphans (by set and prompt) and how to remove them; '' when there are none."""
    if not orphans:
        return ""
    prompts = {}
    for _, name, i in orphans:
        prompts.setdefault(name, set()).add(i)
    named = "; ".join(f"{name}: " + ", ".join(f"prompt_{i}" for i in sorted(ids)[:8])
                      + (f" and {len(ids) - 8} more" if len(ids) > 8 else "") for name, ids in sorted(prompts.items()))
    exp = os.path.basename(os.path.normpath(exp_dir))
    return (f"{exp_dir}: {len(orphans)} file{'s' * (len(orphans) != 1)} of prompts no longer in the experiment "
            f"({named}); fix: remove them with `python -m traitflow.plan.orphans {exp} --delete` "
            f"(or `make clean EXP={exp}`)")


def orphans_line(inputs, exp_dir):
    """describe() for the end-of-run summary (inputs: traitflow.core.settings.InputSettings); '' when there are
    none (or they cannot be told)."""
    from ..experiment.prompt_sets import experiment_prompt_counts

    try:
        return describe(orphan_outputs(exp_dir, experiment_prompt_counts(inputs, exp_dir)), exp_dir)
    except OSError:  # a folder vanishing under a concurrent clean: the summary goes on without this line
        return ""


def experiment_inputs(exp, root="."):
    """The InputSettings of config.yaml merged with experiments/{exp}/config.yaml (top-level keys)."""
    import yaml

    from ..core.settings import input_settings

    config = {}
    for path in (os.path.join(root, "config.yaml"), os.path.join(root, "experiments", exp, "config.yaml")):
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as fh:
                loaded = yaml.safe_load(fh)
            config.update(loaded if isinstance(loaded, dict) else {})
    return input_settings(config)


def main(argv=None):
    from ..core.confine import Confinement, check_experiment, kept_lines
    from ..core.errors import TraitflowError, error_line
    from ..experiment.prompt_sets import experiment_prompt_counts

    parser = argparse.ArgumentParser(prog="python -m traitflow.plan.orphans", description=__doc__.split("\n")[0])
    parser.add_argument("experiment")
    parser.add_argument("--delete", action="store_true", help="remove the files listed")
    args = parser.parse_args(argv)
    try:  # `..` would make experiments/.. the repository: its prompt_N files are not this experiment's
        check_experiment(args.experiment, then="nothing removed")
    except TraitflowError as err:
        print(error_line("orphans", err), file=sys.stderr)
        return 1
    exp_dir = os.path.join("experiments", args.experiment)
    counts = experiment_prompt_counts(experiment_inputs(args.experiment), exp_dir)
    orphans = [path for path, _, _ in orphan_outputs(exp_dir, counts)]
    for path in orphans:
        print(path)
    kept = []
    if args.delete:
        orphans, kept = Confinement(args.experiment).remove(orphans)
        for line in kept_lines("orphans", kept):
            print(line, file=sys.stderr)
        for folder in {os.path.dirname(p) for p in orphans}:  # an emptied set folder goes too
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)
    print(f"{'removed' if args.delete else 'found'} {len(orphans)} file(s) of prompts no longer in "
          f"{exp_dir}", file=sys.stderr)
    return 1 if kept else 0


if __name__ == "__main__":
    sys.exit(main())

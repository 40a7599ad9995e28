"""`make clean EXP=NAME`: every file the workflow generated for one experiment, and nothing else.

    python -m traitflow.outputs.clean NAME [--dry-run]

Removes the files in experiments/NAME's output folders (inference/ but for the named prompt
sets in inference/prompts/, each trait's inference/, viewer/, tables/, report/: the files of
prompts no longer in the experiment lie there too), every file its manifests list (the
extracted vectors and the extraction's .gitignore among them), then logs/NAME and
manifests/NAME. Prompts, examples, config.yaml and the vectors you brought stay. Each path is
judged by traitflow.core.confine before any is removed; one it leaves alone (tracked by git,
a symlink leading out, a manifest listing a file elsewhere) is a warning line.

Exit status 1, with nothing removed, when NAME is not an experiment's name or nothing of it exists.
"""

import argparse
import os
import sys

from ..core.confine import Confinement, check_experiment, experiments, kept_lines
from ..core.errors import TraitflowError, error_line
from ..core.manifests import listed_files
from .verify_outputs import output_files


def generated(experiment):
    """(Confinement, [paths to remove]) for an experiment, relative to the current directory."""
    listed = listed_files(experiment)  # the name is checked first: `..` never reaches a path
    confined = Confinement(experiment, listed=listed)
    found = output_files(os.path.join("experiments", experiment), everything=True)
    own = [os.path.join(d, experiment) for d in ("logs", "manifests")]
    return confined, list(dict.fromkeys(found + listed + own))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m traitflow.outputs.clean", description=__doc__.split("\n")[0])
    parser.add_argument("experiment", help="folder name under experiments/")
    parser.add_argument("-n", "--dry-run", action="store_true", help="list what would be removed; remove nothing")
    args = parser.parse_args(argv)
    exp = args.experiment
    try:
        confined, paths = generated(check_experiment(exp, then="nothing removed"))
    except TraitflowError as err:
        print(error_line("clean", err), file=sys.stderr)
        return 1
    if not any(os.path.lexists(os.path.join(d, exp)) for d in ("experiments", "logs", "manifests")):
        print(error_line("clean", f"experiments/{exp}: no such experiment, nothing removed; fix: name a folder "
                                  f"under experiments/ ({', '.join(experiments()) or 'none yet'})"), file=sys.stderr)
        return 1
    present = [p for p in paths if os.path.lexists(p)]
    if args.dry_run:
        for path in present:
            why = confined.problem(path)
            print(f"would keep {path}: {why}" if why else f"would remove {path}")
        return 0
    removed, kept = confined.remove(present)
    for line in kept_lines("clean", kept):
        print(line, file=sys.stderr)
    print(f"traitflow [clean] experiments/{exp}: removed {len(removed)} generated file(s) and folder(s)"
          + (f"; {len(kept)} left alone (above)" if kept else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

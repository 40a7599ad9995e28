"""Where the commands that delete or overwrite may act: `make clean`, `make verify FIX=1`, orphan removal, the
seed export.

An experiment name typed on a command line is checked with the pattern the plan checks config `experiment`
with (schemas/config.schema.yaml), so `..`, `base/` or `a/b` never become a path. Then every path is judged
where it really lies (symlinks resolved; a symlink itself by the folder it sits in, as removing it leaves
its target alone). One experiment's command removes only:
- files in experiments/{exp}'s output folders (traitflow.core.damage.in_output_folder), and vectors a
  manifest of that experiment lists (the extraction's .gitignore among them);
- logs/{exp} and manifests/{exp};
and never a file git tracks, nor anything under .venv/, models/, resources/ or the running Python's
environment. The export writes nowhere near the workflow's own folders (check_export_folder).
"""

import functools
import os
import re
import shutil
import subprocess
import sys

from .damage import in_output_folder
from .errors import TraitflowError

SCHEMA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "schemas", "config.schema.yaml")
# Never removed, whichever experiment a command names: the environment, the models, the downloaded models.
PROTECTED = (".venv", "models", "resources")
# A workflow directory's own folders: an export into any of them would overwrite what the workflow reads.
WORKFLOW_FOLDERS = ("experiments", "manifests", "logs", ".snakemake") + PROTECTED


@functools.cache
def experiment_pattern():
    """The pattern config `experiment` must match (schemas/config.schema.yaml): the one the plan applies."""
    import yaml

    with open(SCHEMA, encoding="utf-8") as fh:
        return yaml.safe_load(fh)["properties"]["experiment"]["pattern"]


def experiments(root="."):
    folder = os.path.join(root, "experiments")
    return sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d))) if os.path.isdir(folder) \
        else []


def check_experiment(name, root=".", then=""):
    """name, when the plan would accept it as config `experiment`; else one line naming it and the fix
    (then: what the command did instead, e.g. 'nothing removed')."""
    pattern = experiment_pattern()
    if re.fullmatch(pattern, name):
        return name
    existing = experiments(root)
    meant = os.path.basename(os.path.normpath(name))  # `base/` or `experiments/base` (tab completion)
    hint = f"did you mean '{meant}'? " if meant in existing else ""
    raise TraitflowError(f"experiment '{name}'", f"not an experiment name (config experiment must match {pattern})"
                         + (f", {then}" if then else ""),
                         f"{hint}name a folder under experiments/ ({', '.join(existing) or 'none yet'})")


def inside(path, folder):
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def location(path):
    """Where removing path acts: its real path, or for a symlink the link itself in its real folder."""
    if os.path.islink(path):
        return os.path.join(os.path.realpath(os.path.dirname(path) or "."), os.path.basename(path))
    return os.path.realpath(path)


def tracked_files(root):
    """Real paths of the files git tracks under root (none outside a git work tree, or without git)."""
    try:
        proc = subprocess.run(["git", "-C", root, "ls-files", "-z"], capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return set()
    names = proc.stdout.decode("utf-8", "surrogateescape").split("\0") if proc.returncode == 0 else []
    return {os.path.join(root, n) for n in names if n}


class Confinement:
    """The files one experiment's destructive command may remove. listed: the paths its manifests list."""

    def __init__(self, experiment, root=".", listed=()):
        self.experiment = check_experiment(experiment, root)
        self.root = os.path.realpath(root)
        self.exp_dir = os.path.realpath(os.path.join(self.root, "experiments", experiment))
        # a symlinked logs/{exp} is removed as the link: the folder it leads to is not this experiment's
        self.own = [os.path.join(os.path.realpath(os.path.join(self.root, d)), experiment)
                    for d in ("logs", "manifests")]
        self.protected = [os.path.realpath(os.path.join(self.root, d)) for d in PROTECTED]
        self.protected.append(os.path.realpath(sys.prefix))
        self.listed = {location(os.path.join(root, p)) for p in listed}
        self.tracked = None

    def problem(self, path):
        """Why path may not be removed (a phrase), or None when it may."""
        real = location(path)
        why = self.misplaced(real)
        if why:
            return why
        if self.tracked is None:
            self.tracked = tracked_files(self.root)
        if os.path.isdir(real) and not os.path.islink(real):
            held = sorted(t for t in self.tracked if inside(t, real))
        else:
            held = [real] if real in self.tracked else []
        return f"git tracks {os.path.relpath(held[0], self.root)}" if held else None

    def misplaced(self, real):
        """Why a real path (location()) lies where nothing is removed, or None: the check without git."""
        exp = self.experiment
        for folder in self.protected:
            if inside(real, folder):
                shown = os.path.relpath(folder, self.root) if inside(folder, self.root) else folder
                return f"lies in {shown}/, which is never removed from"
        if inside(real, self.exp_dir):
            rel = os.path.relpath(real, self.exp_dir).split(os.sep)
            listed_vector = real in self.listed and "vectors" in rel[:-1]
            if real == self.exp_dir or not (in_output_folder(rel, real) or listed_vector):
                return f"not an output of experiments/{exp} (its output folders: inference/, viewer/, tables/, " \
                       "report/, and the vectors its extraction wrote)"
        elif not any(inside(real, own) for own in self.own):
            return f"outside experiments/{exp}, logs/{exp} and manifests/{exp}"
        return None

    def remove(self, paths):
        """Remove what may be removed (a folder with all it holds); ([removed], [(path, why kept)]).

        Every path is judged before any is removed: a vector is told extracted by the .gitignore beside it."""
        removed, kept, verdicts = [], [], [(p, self.problem(p)) for p in dict.fromkeys(paths) if os.path.lexists(p)]
        for path, why in verdicts:
            if why:
                kept.append((path, why))
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):  # gone with a folder removed before it
                os.unlink(path)
            removed.append(path)
        return removed, kept


def kept_lines(stage, kept):
    """One warning per path a destructive command left alone, with the reason."""
    return [f"traitflow [{stage}] warning: {path}: not removed: {why}" for path, why in kept]


def check_export_folder(out, root=".", sources=()):
    """Refuse an export folder that is an existing non-folder, or lies inside a workflow directory's own
    folders (experiments/, manifests/, logs/, .venv/, models/, resources/, .snakemake/) or the experiments
    folders the files come from (sources): the export would overwrite what the workflow wrote or reads."""
    if os.path.lexists(out) and not os.path.isdir(out):
        raise TraitflowError(f"--out {out}", "exists and is not a folder",
                             "name a folder to write the export into (new or existing), e.g. --out export")
    real = os.path.realpath(out)
    workflows = {os.path.realpath(root)}
    folder = real
    while os.path.dirname(folder) != folder:  # a workflow directory above it: another clone's outputs count too
        folder = os.path.dirname(folder)
        if os.path.isfile(os.path.join(folder, "Snakefile")):
            workflows.add(folder)
    areas = [os.path.join(w, d) for w in sorted(workflows) for d in WORKFLOW_FOLDERS]
    areas += [os.path.realpath(s) for s in sources] + [os.path.realpath(sys.prefix)]
    here = os.path.realpath(".")
    for area in map(os.path.realpath, areas):
        if inside(real, area):
            shown = os.path.relpath(area, here) if inside(area, here) else area
            raise TraitflowError(f"--out {out}", f"lies inside {shown}/, which holds the workflow's own files (the "
                                 "export would overwrite them)", "export to a folder of its own, e.g. --out export")

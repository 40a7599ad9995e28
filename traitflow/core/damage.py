"""Damaged outputs: which files the workflow wrote, and the one line a reader gives when one is damaged.

A truncated or overwritten output (a full disk, a copy cut short, an editor) must
never surface as a SafetensorError or a JSONDecodeError that names no file, nor
get the fix meant for a file the user brought ("re-save it with torch.save"). Every
reader of an output raises damaged(path, problem): the file, that it is damaged,
and the command that rebuilds it (delete it and rerun: the workflow requests every
file a finished job's manifest lists, so the job that wrote it runs again).
`make verify EXP=NAME` (traitflow.outputs.verify_outputs) finds every damaged file at once.
"""

import functools
import os
import shlex
import sys

from .errors import TraitflowError

# Folders of generated files, directly under experiments/{exp}/ ("inference" also under a trait).
# experiments/{exp}/X/... for X here; a trait's own outputs lie in {trait}/inference/ and {trait}/steering/
OUTPUT_FOLDERS = ("inference", "viewer", "tables", "report", "variants")
TRAIT_OUTPUT_FOLDERS = ("inference", "steering")


def _locate(path):
    """("experiments" or "manifests", experiment name, parts below it) for the last such folder in path."""
    parts = os.path.normpath(path).split(os.sep)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] in ("experiments", "manifests"):
            return parts[i], parts[i + 1], parts[i + 2:]
    return None, None, []


def experiment_of(path):
    """(experiment name, path parts below experiments/{exp}/ or manifests/{exp}/), else (None, [])."""
    _, experiment, rel = _locate(path)
    return experiment, rel


def extracted_by_the_workflow(path):
    """True for a vector (or its metadata) that extraction wrote: it lists them, relative to the trait's
    vectors/ folder (a position's vectors lie in a sub-folder), in a .gitignore it writes in that folder."""
    parts = os.path.normpath(path).split(os.sep)
    if "vectors" not in parts[:-1]:
        return False
    at = len(parts) - 2 - parts[-2::-1].index("vectors")  # the innermost vectors/ folder above the file
    try:
        with open(os.path.join(os.sep.join(parts[:at + 1]) or os.sep, ".gitignore"), encoding="utf-8") as fh:
            return "/".join(parts[at + 1:]) in {line.strip() for line in fh}
    except OSError:
        return False


def is_output(path):
    """True for a file the workflow writes (so the fix for damage is to rebuild it, not to re-save it)."""
    root, _, rel = _locate(path)
    if root == "manifests":
        return bool(rel)
    return in_output_folder(rel, path)


def in_output_folder(rel, path):
    """True for a path (rel: its parts below experiments/{exp}/) inside a folder of generated files, or a
    vector the extraction wrote: what `make clean` and `make verify FIX=1` may delete (traitflow.core.confine)."""
    if len(rel) < 2 or rel[:2] == ["inference", "prompts"]:  # named prompt sets: the user's input
        return False
    if rel[0] in OUTPUT_FOLDERS or any(f in rel[:-1] for f in TRAIT_OUTPUT_FOLDERS):
        return True
    return "vectors" in rel[:-1] and extracted_by_the_workflow(path)


def removal_target(path):
    """What to delete so that a damaged file is rebuilt: the file, or the directory() output it lies in
    (the report's figures: Snakemake tracks the folder, marked by its .snakemake_timestamp, not its files)."""
    folder = os.path.dirname(path)
    return folder if os.path.exists(os.path.join(folder, ".snakemake_timestamp")) else path


def program(name, relative=True):
    """How to type a program of this Python's environment (.venv/bin/NAME) so that it runs as printed,
    whether or not the environment is activated: relative to the current directory when it lies under it
    (and relative is asked for), else absolute; bare NAME if the environment has none."""
    path = os.path.abspath(os.path.join(os.path.dirname(sys.executable), name))
    if not os.path.exists(path):
        return name
    here = os.getcwd()
    return os.path.relpath(path, here) if relative and path.startswith(here + os.sep) else path


def rebuild_command(path):
    """The shell command that rebuilds one output: delete it, then run the workflow for its experiment."""
    experiment, _ = experiment_of(path)
    target = removal_target(path)
    remove = "rm -rf" if target != path else "rm -f"
    command = f"{remove} {shlex.quote(target)} && {program('snakemake')} --cores all"
    return command + (f" --config experiment={shlex.quote(experiment)}" if experiment else "")


def verify_command(path):
    experiment, _ = experiment_of(path)
    return f"make verify EXP={shlex.quote(experiment)}" if experiment else None


def damaged(path, problem):
    """The error for a damaged output: which file, what is wrong, how to rebuild it (and find the others)."""
    more = verify_command(path)
    fix = f"rebuild it: `{rebuild_command(path)}`" + (f" (`{more}` lists every damaged file)" if more else "")
    return TraitflowError(path, f"damaged output: {problem}", fix)


def describe(err):
    """An exception from a file reader as a short phrase: its type and the first line of its message."""
    first = (str(err).strip().splitlines() or [""])[0]
    first = first.split(". ")[0]  # torch's zip errors go on for three sentences
    return f"{type(err).__name__}: {first[:160]}" if first else type(err).__name__


def reports_damage(kind):
    """Decorator for a reader whose first argument is a path: anything it raises on a broken file becomes one
    line, damaged(path, ...) for an output, a plain TraitflowError for any other file.

    OSError (a missing file, no permission: not damage) and TraitflowError pass through unchanged.
    """
    def wrap(read):
        @functools.wraps(read)
        def reader(path, *args, **kwargs):
            try:
                return read(path, *args, **kwargs)
            except (OSError, TraitflowError, MemoryError):
                raise
            except Exception as err:  # safetensors, json, torch each raise their own types on a truncated file
                problem = f"not a readable {kind} ({describe(err)})"
                if is_output(str(path)):
                    raise damaged(str(path), problem) from None
                raise TraitflowError(str(path), problem, "replace it with a complete copy") from None
        return reader
    return wrap


# ---- outputs that cannot be written ------------------------------------------------------------

_FULL = {"ENOSPC": "no space left on the device", "EDQUOT": "disk quota exceeded", "EFBIG": "file too large"}
_DENIED = {"EACCES": "permission denied", "EPERM": "not permitted", "EROFS": "read-only file system"}


def unwritable(path, err):
    """The one line for a write that failed because the disk is full or the folder is read-only, else None.

    Writers that wrap the OS error (torch's zip writer raises RuntimeError "file write
    failed", pyarrow its own types) lose the errno: a write failure with (almost) no
    free space left is then reported as a full disk too.
    """
    import errno as errnos
    import shutil

    folder = os.path.dirname(path) or "."
    name = errnos.errorcode.get(getattr(err, "errno", None) or 0)
    if name is None and not isinstance(err, (OSError, RuntimeError)):
        return None
    if name is None:
        existing = folder
        while not os.path.isdir(existing) and os.path.dirname(existing) != existing:
            existing = os.path.dirname(existing) or "."
        try:
            name = "ENOSPC" if shutil.disk_usage(existing).free < (1 << 20) else None
        except OSError:
            name = None
    quoted = shlex.quote(folder)
    if name in _FULL:
        return TraitflowError(path, f"cannot write: {_FULL[name]} ({name})",
                              f"free space where {folder} lies (`df -h {quoted}`), then rerun: finished jobs are "
                              "kept and only the unfinished ones run")
    if name in _DENIED:
        return TraitflowError(path, f"cannot write: {_DENIED[name]} in {folder} ({name})",
                              f"make it writable (`chmod -R u+w {quoted}`), or run the workflow from a copy you can "
                              "write to")
    return None

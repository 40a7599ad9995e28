"""Before any job runs: every folder the scheduled jobs write into is writable, and its disk is not full.

Snakemake deletes a job's old outputs itself before the job starts; on a read-only
folder (or a full disk) that ends in its own traceback, naming no folder and
printing no summary. The Snakefile's onstart (only when jobs will run: never on a
dry run or a run with nothing to do, so a read-only copy of finished results can
still be planned and viewed) calls check_jobs, which names the folder instead.
A disk that fills up while jobs run is reported by the job that fails to write
(traitflow.core.formats.atomic_write).
"""

import os
import shlex
import shutil

from ..core.errors import TraitflowError

MIN_FREE_BYTES = 1 << 20  # below this, the first write of any job fails


def _existing(folder):
    """The folder, or its nearest ancestor that exists (where the folder will be created)."""
    folder = os.path.abspath(folder)
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    return folder


def _written_by(job):
    """The paths a Snakemake job writes: declared outputs, logs, and the per-shard files in params.outputs."""
    paths = [*job.output, *job.log]
    planned = getattr(job.params, "outputs", None) if hasattr(job, "params") else None
    if isinstance(planned, dict):
        for files in planned.values():
            paths += [files] if isinstance(files, str) else list(files)
    return paths


def folder_problem(paths, jobs_by_path=None, min_free=MIN_FREE_BYTES):
    """A TraitflowError for the first folder among paths' folders that cannot be written, else None.

    jobs_by_path: {path: job name} to say which jobs would have failed there.
    """
    folders = {}
    for path in paths:
        folders.setdefault(os.path.dirname(path) or ".", []).append(path)
    checked = {}
    for folder in sorted(folders):
        where = _existing(folder)
        if where in checked:
            continue
        checked[where] = True
        jobs = sorted({(jobs_by_path or {}).get(p) for p in folders[folder]} - {None})
        who = f"; {len(jobs)} job(s) write there ({', '.join(jobs[:3])}{', ...' if len(jobs) > 3 else ''})" if jobs else ""
        shown = os.path.relpath(where) if not os.path.relpath(where).startswith("..") else where
        if not os.access(where, os.W_OK):
            reason = "read-only file system" if _read_only_mount(where) else "permission denied"
            return TraitflowError(shown, f"cannot write: {reason}{who}",
                                  f"make it writable (`chmod -R u+w {shlex.quote(shown)}`), or run the workflow "
                                  "from a copy you can write to; nothing was started")
        try:
            free = shutil.disk_usage(where).free
        except OSError:
            continue
        if free < min_free:
            return TraitflowError(shown, f"cannot write: the disk is full ({free} bytes free){who}",
                                  f"free space there (`df -h {shlex.quote(shown)}`), then rerun; nothing was started")
    return None


def _read_only_mount(folder):
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_jobs(jobs):
    """folder_problem for every file the given Snakemake jobs write."""
    paths, names = [], {}
    for job in jobs:
        for path in _written_by(job):
            paths.append(str(path))
            names[str(path)] = job.rule.name if hasattr(job, "rule") else str(job)
    return folder_problem(paths, names)


def stop_if_unwritable(jobs, print_summary):
    """The Snakefile's onstart: on a problem, its line, then the run summary, then exit 1 (no job has started;
    Snakemake would fail deleting a job's old outputs with its own traceback)."""
    import sys

    from ..core.errors import error_line

    problem = check_jobs(jobs)
    if problem:
        print(error_line("run", problem), file=sys.stderr, flush=True)
        print_summary()
        raise SystemExit(1)

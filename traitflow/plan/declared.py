"""What a per-shard job declares to Snakemake: its manifest, plus only those of its files this plan needs.

A declared output costs every plan a pattern match and about 22 stat and 6 open calls on a
no-op (at 30 traits x 1,000 prompts: 92k declared files, 2.0M stats, 62 s of CPU). So a
per-shard job declares its manifest (first, so Snakemake's producer search matches it
at once) and passes the files it writes in params.outputs. Three kinds of its files are
declared as well, so Snakemake still rebuilds exactly what is needed:

- files named on the command line (`snakemake experiments/E/T/inference/.../prompt_3.pt`):
  the job that writes them is found and run, nothing else;
- files its finished manifest lists that are gone from disk: declared and requested by
  the default target, so their job reruns (Snakemake's "missing output");
- files whose size differs from the manifest's record (truncated, overwritten): a run removes
  them, so they are lost files as above (a job's own process, on a cluster, then plans the same
  outputs). A dry run removes nothing: the job declares a repair note instead,
  logs/{exp}/repairs/{job}.{token}.txt, missing and requested, so the dry run shows the job.

The size check costs one stat per file the manifests list; with check_sizes off, missing
files are found with one directory listing per folder instead, and `make verify` finds
resized and changed files (traitflow.core.manifests).
"""

import hashlib
import os
import sys

from ..core.errors import TraitflowError
from ..core.manifests import missing_files, read_manifest


def named_paths(argv):
    """Command-line words that could be target files (normalised); options and values never match an output."""
    return {os.path.normpath(a) for a in argv if a and not a.startswith("-")}


def plain_run(argv):
    """Whether the command line runs jobs: not a dry run, and not --touch, --summary, --lint, --report and friends."""
    special = ("--dry-run", "--dryrun", "--touch", "--summary", "--detailed-summary", "--lint", "--report", "--list",
               "--dag", "--rulegraph", "--filegraph", "--unlock", "--delete", "--cleanup", "--d3dag", "--containerize")
    short_n = any(a.startswith("-") and not a.startswith("--") and a[1:].isalpha() and "n" in a[1:] for a in argv)
    return not short_n and not any(a.startswith(special) for a in argv)


def target_jobs(argv):
    """Rule names after --target-jobs (how Snakemake starts one job in its own process, e.g. on a cluster)."""
    names, on = set(), False
    for a in argv:
        if a.startswith("-"):
            on = a == "--target-jobs"
        elif on:
            names.add(a.split(":")[0])
    return names


class Declared:
    def __init__(self, manifest_paths, named=(), check_sizes=True, warn=True, only=None, remove_damaged=False):
        """only: the rule names whose files to check (a job's own process checks only its job), None: all.
        remove_damaged: a run's plan removes resized files (they are then lost); a dry run's keeps them."""
        self.named = set(named)
        self.remove_damaged = remove_damaged
        self.only = only
        self.check_sizes = check_sizes
        self.warn = warn
        self.listings = {}
        self.requests = []  # lost files and repair notes: the default target asks for them
        self.manifests = {}
        for path in manifest_paths:
            try:
                self.manifests[path] = read_manifest(path)
            except FileNotFoundError:
                continue
            except TraitflowError as err:  # unreadable: its job reruns through a repair note
                self.manifests[path] = err

    def traits(self, manifest_paths):
        """Every trait that the finished jobs among manifest_paths covered (recorded in their manifests)."""
        names = []
        for path in manifest_paths:
            m = self.manifests.get(path)
            names += [] if m is None or isinstance(m, TraitflowError) else (m.traits or [])
        return list(dict.fromkeys(names))

    def outputs(self, manifest_path, files, repair_dir):
        """The output dict of one job: {"manifest": path, "extra": [files to declare], "repair": note}."""
        flat = [f for group in files.values() for f in ([group] if isinstance(group, str) else group)]
        out = {"manifest": manifest_path}
        extra = [f for f in flat if f in self.named] if self.named else []
        lost, damaged = self._broken(manifest_path, set(flat))
        extra += [f for f in lost if f not in extra]
        self.requests += lost
        if damaged:
            token = hashlib.sha256(repr(sorted(damaged.items())).encode()).hexdigest()[:12]
            name = os.path.basename(manifest_path).removesuffix(".json")
            out["repair"] = os.path.join(repair_dir, f"{name}.{token}.txt")
            self.requests.append(out["repair"])
        if extra:
            out["extra"] = extra
        return out

    def _broken(self, manifest_path, planned):
        """(lost files, {damaged file: (size, mtime_ns, problem)}) among the planned files of a finished job."""
        m = self.manifests.get(manifest_path)
        if m is None or self.only is not None and os.path.basename(manifest_path)[:-len(".json")] not in self.only:
            return [], {}
        if isinstance(m, TraitflowError):
            self._say(f"{m}; its job reruns")
            return [], {manifest_path: (0, 0, str(m))}
        records = [r for r in m.files if r.path in planned]
        if not self.check_sizes:
            return missing_files([r.path for r in records], self.listings), {}
        lost, damaged = [], {}
        for r in records:
            try:
                st = os.stat(r.path)
            except OSError:
                lost.append(r.path)
                continue
            if r.bytes is not None and st.st_size != r.bytes:
                damaged[r.path] = (st.st_size, st.st_mtime_ns, f"{st.st_size} bytes, its manifest records {r.bytes}")
        for path, (_, _, problem) in damaged.items():
            removed = self.remove_damaged and _remove(path)
            self._say(f"{path}: damaged ({problem}); {'removed: ' if removed else ''}its job "
                      f"({m.rule or manifest_path}) {'rebuilds it' if removed else 'reruns'}")
            if removed:
                lost.append(path)
        return lost, {p: d for p, d in damaged.items() if p not in lost}

    def _say(self, line):
        if self.warn:
            print(f"traitflow [plan] warning: {line}", file=sys.stderr)


def _remove(path):
    try:
        os.remove(path)
        return True
    except OSError:
        return False

"""Job manifests: what each finished job wrote, with every file's byte size and sha256.

Every per-shard job writes manifests/{exp}/{trait|_shared}/{stage}_{shard}.json last
(traitflow.outputs.scripting.write_manifest). Snakemake sees only the manifests (one declared
output per job keeps planning fast at scale); the files they list are checked here.

Format (version 2):

    {"version": 2, "rule": "capture_shard3", "wildcards": {},
     "traits": ["refusal", ...],            # only for jobs that serve traits
     "files": [{"path": "experiments/E/...", "bytes": 123, "sha256": "ab..."}, ...]}

Version 1 manifests (before sizes were recorded) list bare paths; `snakemake --touch`
leaves empty files. Both read as manifests whose entries have bytes/sha256 None.

The API (used by the plan and by `make verify`):

    read_manifest(path) -> Manifest | None      # None: empty (touched) manifest
    Manifest.rule, .traits, .files (list[FileRecord(path, bytes, sha256)])
    find_manifests(experiment, root=".") -> [manifest paths] of experiments/{experiment}
    listed_files(experiment, root=".") -> [every path its readable manifests list] (`make clean`)
    damaged_files(manifest, hashes=True) -> [Damage(path, problem, manifest)]:
        missing, wrong size, or (hashes=True) wrong sha256; unrecorded sizes/hashes are not judged
    missing_files(records) -> [paths]: the listed files that are not on disk, checked with one
        directory listing per folder (no per-file system call: the plan's cheap check)
    file_record(path) -> FileRecord with the file's size and sha256 (what write_manifest stores)
"""

import hashlib
import json
import os
from dataclasses import dataclass

from .errors import TraitflowError

VERSION = 2
MANIFESTS_DIR = "manifests"


@dataclass(frozen=True)
class FileRecord:
    path: str
    bytes: int | None = None
    sha256: str | None = None


@dataclass
class Manifest:
    path: str
    rule: str | None
    files: list
    traits: list | None = None


@dataclass(frozen=True)
class Damage:
    path: str  # the damaged (or missing) file
    problem: str  # one line: "missing", "2000 bytes, the manifest records 123456", "sha256 differs ..."
    manifest: str  # the manifest that lists it (its job rebuilds the file)


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def file_record(path):
    """A written file's entry: its size and sha256 (read back once, from the page cache)."""
    return FileRecord(path, os.path.getsize(path), sha256_file(path))


def manifest_json(rule, wildcards, records, traits=None):
    out = {"version": VERSION, "rule": rule, "wildcards": dict(wildcards)}
    if traits is not None:
        out["traits"] = list(traits)
    out["files"] = [{"path": r.path, "bytes": r.bytes, "sha256": r.sha256} for r in records]
    return out


def read_manifest(path):
    """The manifest at path, or None for an empty one (`snakemake --touch`); a damaged one is a TraitflowError."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if not text.strip():
        return None
    try:
        data = json.loads(text)
        files = [FileRecord(f) if isinstance(f, str) else FileRecord(f["path"], f.get("bytes"), f.get("sha256"))
                 for f in data["files"]]
    except (ValueError, KeyError, TypeError) as err:
        raise TraitflowError(path, f"damaged manifest ({type(err).__name__}: {err})",
                             "delete it: the next run reruns its job") from None
    return Manifest(path, data.get("rule"), files, data.get("traits"))


def find_manifests(experiment, root="."):
    """Every manifest of an experiment, sorted (manifests/{experiment}/{owner}/{job}.json); an experiment name
    the plan would refuse (`..`, `a/b`) is a TraitflowError, never a walk of another folder."""
    from .confine import check_experiment

    base = os.path.normpath(os.path.join(root, MANIFESTS_DIR, check_experiment(experiment, root)))
    found = []
    for owner, _, files in os.walk(base):
        found += [os.path.join(owner, f) for f in files if f.endswith(".json")]
    return sorted(found)


def missing_files(paths, listings=None):
    """The paths that are not on disk, from one directory listing per folder (cached in listings)."""
    listings = {} if listings is None else listings
    missing = []
    for path in paths:
        folder, name = os.path.split(path)
        names = listings.get(folder)
        if names is None:
            try:
                names = listings[folder] = set(os.listdir(folder or "."))
            except OSError:
                names = listings[folder] = set()
        if name not in names:
            missing.append(path)
    return missing


def damaged_files(manifest, hashes=True):
    """[Damage] for the files of a Manifest (or a manifest path) that are missing, resized or (hashes) changed."""
    if isinstance(manifest, str):
        manifest = read_manifest(manifest)
    if manifest is None:
        return []
    damaged = []
    for rec in manifest.files:
        try:
            size = os.path.getsize(rec.path)
        except OSError:
            damaged.append(Damage(rec.path, "missing", manifest.path))
            continue
        if rec.bytes is not None and size != rec.bytes:
            damaged.append(Damage(rec.path, f"{size} bytes, its manifest records {rec.bytes}", manifest.path))
        elif hashes and rec.sha256 is not None and sha256_file(rec.path) != rec.sha256:
            damaged.append(Damage(rec.path, "content differs from its manifest's sha256", manifest.path))
    return damaged


def listed_files(experiment, root="."):
    """Every path the experiment's readable manifests list, in order (damaged ones are `make verify`'s)."""
    paths = []
    for path in find_manifests(experiment, root):
        try:
            found = read_manifest(path)
        except (TraitflowError, OSError):
            continue
        paths += [rec.path for rec in found.files] if found else []
    return paths


def main(argv=None):
    """`python -m traitflow.core.manifests EXPERIMENT`: print every file the experiment's manifests list."""
    import argparse
    import sys

    from .errors import error_line

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("experiment")
    args = ap.parse_args(argv)
    try:
        paths = listed_files(args.experiment)
    except TraitflowError as err:
        print(error_line("manifests", err), file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`make verify EXP=NAME`: every output of an experiment checked; `FIX=1` removes the damaged ones.

Two checks, so that damage is found whether or not a job recorded its files:
- against its job's manifest (traitflow.core.manifests): present, same size, same sha256;
- by format, for every file no manifest vouches for with a matching sha256 (the
  viewer's JSON, the tables, the report, extracted vectors, files of manifests
  written before sizes were recorded): capture files through traitflow.outputs.verify, the
  shared .safetensors, responses, any JSON, Parquet footers, CSV rows against
  their Parquet twin, PNG and HTML ends.
A damaged file is listed with its problem; with --remove it is deleted (a figure
inside a report folder takes its folder, which is what Snakemake tracks; only ever
inside the experiment's outputs: traitflow.core.confine; a manifest that lists a file
elsewhere is itself called damaged, and goes instead), so the
next run rebuilds exactly the jobs that wrote them: the plan requests every file a
finished job's manifest lists that is missing, and every declared output.

    python -m traitflow.outputs.verify_outputs --exp NAME [--remove] [--workdir DIR]

Exit status: 0 when nothing is damaged (or everything damaged was removed), 1 otherwise.
"""

import argparse
import os
import shlex
import sys

from ..core.confine import Confinement, check_experiment, kept_lines, location
from ..core.damage import describe, in_output_folder, removal_target
from ..core.errors import TraitflowError, error_line
from ..core.manifests import damaged_files, find_manifests, listed_files, read_manifest

SKIP = (".gitignore", ".snakemake_timestamp")
# Hidden files in output folders are atomic_write's temporaries: removed when their job reruns.


def output_files(exp_dir, everything=False):
    """Every generated file of an experiment found on disk: its output folders, and extracted vectors
    (everything: with the temporaries, markers and symlinks to folders verify skips, for `make clean`)."""
    found = []
    for folder, dirs, files in os.walk(exp_dir):
        dirs.sort()
        links = [d for d in dirs if os.path.islink(os.path.join(folder, d))] if everything else []
        for name in sorted(files + links):
            path = os.path.join(folder, name)
            if not everything and (name.startswith(".") or name in SKIP):
                continue
            if in_output_folder(os.path.relpath(path, exp_dir).split(os.sep), path):
                found.append(path)
    return found


def _png(path):
    with open(path, "rb") as fh:
        head = fh.read(8)
        fh.seek(max(0, os.path.getsize(path) - 12))
        tail = fh.read()
    if head != b"\x89PNG\r\n\x1a\n" or not tail.endswith(b"IEND\xaeB`\x82"):
        return "not a complete PNG image (no PNG signature or no IEND chunk at the end)"
    return None


def _html(path):
    with open(path, "rb") as fh:
        fh.seek(max(0, os.path.getsize(path) - 64))
        tail = fh.read()
    return None if tail.rstrip().lower().endswith(b"</html>") else "HTML cut short (no closing </html>)"


def _parquet(path):
    import pyarrow.parquet as pq

    try:
        pq.read_metadata(path)
    except Exception as err:  # pyarrow's ArrowInvalid and others: a cut footer
        return f"not a readable Parquet file ({describe(err)})"
    return None


def _csv(path):
    """Parses, and has as many rows as its Parquet twin (a CSV cut at a line end still parses)."""
    import pandas as pd

    try:
        rows = len(pd.read_csv(path, keep_default_na=False, dtype=str))
    except Exception as err:  # pandas' ParserError, UnicodeDecodeError, EmptyDataError
        return f"not a readable CSV file ({describe(err)})"
    twin = path[:-len(".csv")] + ".parquet"
    if os.path.exists(twin) and not _parquet(twin):
        import pyarrow.parquet as pq

        expected = pq.read_metadata(twin).num_rows
        if rows != expected:
            return f"{rows} rows, its Parquet twin {os.path.basename(twin)} has {expected}"
    return None


def _response(record):
    """A shared response JSON: its prompt and response each with text, tokens and ids that agree."""
    for side in ("prompt", "response"):
        part = record.get(side) if isinstance(record, dict) else None
        if not isinstance(part, dict) or not {"text", "token_ids", "n_tokens"} <= set(part):
            return f"missing '{side}' with its text, token_ids and n_tokens"
        if len(part["token_ids"]) != part["n_tokens"]:
            return f"{side}: {len(part['token_ids'])} token ids, n_tokens says {part['n_tokens']}"
    return None


def format_problem(path):
    """One line saying what is wrong with an output file's contents, or None when it reads as its format."""
    from ..core.formats import load_json

    parts = os.path.normpath(path).split(os.sep)
    name = parts[-1]
    try:
        if name.endswith(".safetensors") and "shared" in parts:
            from .verify import verify_shared
            problems = [p.removeprefix("damaged output: ") for p in verify_shared(path)]
            return "; ".join(problems[:3]) or None
        if parts[-2] in ("residual_stream_activations", "layer_internal_states") and name.endswith((".pt", ".json")):
            from ..core.formats import load_pt
            from .verify import verify_all_layers, verify_single_layer
            record = load_json(path) if name.endswith(".json") else load_pt(path)
            verify = verify_all_layers if parts[-2] == "residual_stream_activations" else verify_single_layer
            # path=None: the shared file is checked once, on its own, not once per trait
            problems = verify(record, None)
            return "; ".join(problems[:3]) or None
        if parts[-2] == "vectors" and name.endswith((".pt", ".safetensors")):
            from ..experiment.vectors import load_vector
            load_vector(path)
            return None
        if name.endswith(".json"):
            record = load_json(path)
            return _response(record) if parts[-2] == "responses" else None
        if name.endswith(".pt"):
            from ..core.formats import load_pt
            load_pt(path)
            return None
        checks = {".parquet": _parquet, ".csv": _csv, ".png": _png, ".html": _html}
        for ext, check in checks.items():
            if name.endswith(ext):
                return check(path)
    except TraitflowError as err:
        return err.problem.removeprefix("damaged output: ")
    except OSError as err:
        return f"cannot be read ({describe(err)})"
    return None


def find_damaged(experiment, hashes=True):
    """([(path, problem)] damaged, [(path, manifest)] missing) for an experiment, from the current directory."""
    exp_dir = os.path.join("experiments", experiment)
    damaged, missing, vouched = [], [], set()
    confined = Confinement(experiment, listed=listed_files(experiment))
    for manifest_path in find_manifests(experiment):
        try:
            manifest = read_manifest(manifest_path)
        except TraitflowError as err:
            damaged.append((manifest_path, err.problem))
            continue
        except OSError as err:
            damaged.append((manifest_path, f"cannot be read ({describe(err)})"))
            continue
        if manifest is None:
            continue
        foreign = next((r.path for r in manifest.files if confined.misplaced(location(r.path))), None)
        if foreign:  # never judged, never removed: the manifest goes, and its job rewrites it
            damaged.append((manifest_path, f"lists {foreign}, which is not an output of experiments/{experiment}"))
            continue
        found = damaged_files(manifest, hashes=hashes)
        for d in found:
            (missing.append((d.path, d.manifest)) if d.problem == "missing" else damaged.append((d.path, d.problem)))
        flagged = {d.path for d in found}
        vouched |= {r.path for r in manifest.files if r.path not in flagged and (r.sha256 if hashes else r.bytes)
                    is not None}
    done = {os.path.normpath(p) for p, _ in damaged} | {os.path.normpath(p) for p in vouched}
    for path in output_files(exp_dir):
        if os.path.normpath(path) in done:
            continue
        problem = format_problem(path)
        if problem:
            damaged.append((path, problem.removeprefix("damaged output: ")))
    return sorted(damaged), sorted(missing)


def remove(experiment, paths):
    """([removed], [(path, why kept)]): each damaged file (or the folder Snakemake tracks it by), where
    traitflow.core.confine allows (never a tracked file, nor outside the experiment's outputs)."""
    return Confinement(experiment, listed=listed_files(experiment)).remove(removal_target(p) for p in paths)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Check every output of an experiment; list (or remove) damaged files.")
    parser.add_argument("--exp", default="demo", help="experiment folder under experiments/ (default: demo)")
    parser.add_argument("--remove", action="store_true", help="delete the damaged files, so the next run rebuilds them")
    parser.add_argument("--no-hash", dest="hashes", action="store_false",
                        help="compare sizes only, not sha256 (faster on large experiments)")
    parser.add_argument("--workdir", default=".", help="workflow directory holding experiments/ (default: .)")
    args = parser.parse_args(argv)
    try:
        os.chdir(args.workdir)
    except OSError as err:
        print(f"traitflow [verify] error: {args.workdir}: cannot enter the workflow directory ({describe(err)}); "
              "fix: pass --workdir the folder holding experiments/", file=sys.stderr)
        return 1
    try:
        check_experiment(args.exp, then="nothing checked or removed")
    except TraitflowError as err:
        print(error_line("verify", err), file=sys.stderr)
        return 1
    exp = shlex.quote(args.exp)
    if not os.path.isdir(os.path.join("experiments", args.exp)):
        print(f"traitflow [verify] error: experiments/{args.exp}: experiment not found; fix: pass EXP=NAME of a "
              "folder under experiments/", file=sys.stderr)
        return 1
    damaged, missing = find_damaged(args.exp, args.hashes)
    for path, problem in damaged:
        print(f"damaged: {path}: {problem}")
    for path, manifest in missing:
        print(f"missing: {path} (listed in {manifest}; the next run rebuilds it)")
    if not damaged:
        print(f"traitflow [verify] experiments/{args.exp}: no damaged output"
              + (f" ({len(missing)} missing: the next run rebuilds them)" if missing else ""))
        return 0
    if args.remove:
        removed, kept = remove(args.exp, [p for p, _ in damaged])
        for line in kept_lines("verify", kept):
            print(line, file=sys.stderr)
        print(f"traitflow [verify] removed {len(removed)} damaged output(s): {', '.join(removed)}; rebuild them with "
              f"`snakemake --cores all --config experiment={exp}`")
        if kept:
            print(error_line("verify", f"experiments/{args.exp}: {len(kept)} damaged file(s) not removed (above); fix: "
                             "remove them yourself if the workflow wrote them"), file=sys.stderr)
            return 1
        return 0
    print(f"traitflow [verify] error: experiments/{args.exp}: {len(damaged)} damaged output(s); fix: "
          f"`make verify EXP={exp} FIX=1` removes them, then `snakemake --cores all --config experiment={exp}` "
          "rebuilds exactly those", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

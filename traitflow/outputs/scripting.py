"""The one way Snakemake scripts run: log to the rule's log, one line per user error."""

import logging
import os
import sys
import traceback
from types import SimpleNamespace

from ..core.errors import TraitflowError, error_line
from ..core.formats import atomic_write, remove_stale_temps, save_json
from ..core.manifests import file_record, manifest_json


def job_outputs(snakemake):
    """The files a job writes, by name ({"shared": [...], "pt": [...], ...}): params.outputs.

    Per-shard jobs declare only their manifest to Snakemake (plus any of their files
    that are missing, damaged or asked for by name): a declared file costs every plan
    a pattern match and several metadata reads. Their files therefore come from params.
    Jobs without params.outputs write their declared outputs.
    """
    planned = getattr(snakemake.params, "outputs", None)
    if planned is None:
        return snakemake.output
    return SimpleNamespace(**planned)


def planned_files(snakemake):
    """Every file the job writes (its declared outputs less the manifest, or params.outputs), in order."""
    planned = getattr(snakemake.params, "outputs", None)
    if planned is None:
        manifest = getattr(snakemake.output, "manifest", None)
        return [f for f in snakemake.output if f != manifest]
    return [f for files in planned.values() for f in ([files] if isinstance(files, str) else files)]


def write_manifest(snakemake):
    """Record a finished job's files in its manifest, written last: each file's size and sha256.

    Downstream rules and the final target depend on manifests, one per job, not on
    the per-prompt files (traitflow.core.manifests documents the format and reads it).
    """
    traits = getattr(snakemake.params, "traits", None)
    names = None if traits is None else [t if isinstance(t, str) else t["name"] for t in traits]
    records = [file_record(f) for f in planned_files(snakemake)]
    save_json(manifest_json(snakemake.rule, snakemake.wildcards, records, names), snakemake.output.manifest, indent=1)
    repair = getattr(snakemake.output, "repair", None)
    if repair:  # the note that made this job rerun (traitflow/plan/declared.py): what it rebuilt
        note = (f"{snakemake.rule} rebuilt its {len(records)} files after the plan found some of them resized "
                f"(the plan's warning lines name them); manifest {snakemake.output.manifest}\n")

        def write(tmp):
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(note)
        atomic_write(repair, write)


def run_script(snakemake, main):
    """Call main(snakemake); on failure write one line to stderr and the log, then exit 1.

    A TraitflowError becomes its own message; anything else becomes its type and
    message with the traceback kept in the log for whoever debugs it.
    """
    log = snakemake.log[0] if snakemake.log else None
    logging.basicConfig(filename=log, level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    # Set before transformers is first imported (importing it here would cost every
    # torch-free script a second); it reads both when it loads.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    rule = snakemake.rule
    try:
        remove_stale_temps(list(snakemake.output) + planned_files(snakemake))
        main(snakemake)
        if hasattr(snakemake.output, "manifest"):
            write_manifest(snakemake)
    except TraitflowError as err:
        _fail(rule, str(err), log)
    except Exception as err:  # unexpected: keep the traceback in the log, one line on screen
        if log:
            with open(log, "a", encoding="utf-8") as fh:
                traceback.print_exc(file=fh)
        first_line = (str(err).strip().splitlines() or [""])[0]
        _fail(rule, f"{type(err).__name__}: {first_line} (traceback in {log})", log)


def _fail(rule, message, log):
    line = error_line(rule, message)
    print(line, file=sys.stderr)
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    sys.exit(1)

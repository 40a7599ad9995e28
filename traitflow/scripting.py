"""The one way Snakemake scripts run: log to the rule's log, one line per user error."""

import logging
import os
import sys
import traceback

from .errors import TraitflowError, error_line
from .formats import remove_stale_temps, save_json


def write_manifest(snakemake):
    """Record a finished job's files in its manifest, written last.

    Downstream rules and the final target depend on manifests, one per job, not
    on the per-prompt files: Snakemake matches every input path against every
    output pattern, which took ~20 s of planning for 10 traits x 200 prompts.
    """
    files = [f for f in snakemake.output if f != snakemake.output.manifest]
    save_json({"rule": snakemake.rule, "wildcards": dict(snakemake.wildcards), "files": files},
              snakemake.output.manifest, indent=1)


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
        remove_stale_temps(list(snakemake.output))
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

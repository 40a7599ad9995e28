"""The one way Snakemake scripts run: log to the rule's log, one line per user error."""

import logging
import sys
import traceback

from .errors import TraitflowError, error_line
from .formats import remove_stale_temps


def run_script(snakemake, main):
    """Call main(snakemake); on failure write one line to stderr and the log, then exit 1.

    A TraitflowError becomes its own message; anything else becomes its type and
    message with the traceback kept in the log for whoever debugs it.
    """
    log = snakemake.log[0] if snakemake.log else None
    logging.basicConfig(filename=log, level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    for noisy in ("transformers", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    rule = snakemake.rule
    try:
        remove_stale_temps(list(snakemake.output))
        main(snakemake)
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

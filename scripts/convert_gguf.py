"""Convert the GGUF file config `model` names into the rule's output folder (traitflow.model.gguf)."""

import logging
import os
import time

from traitflow.outputs.scripting import run_script


def main(smk):
    from traitflow.model.gguf import convert_gguf

    start = time.time()
    record, _ = convert_gguf(smk.input.gguf, os.path.dirname(smk.output.config), smk.params.source,
                          expected_sha256=smk.params.sha256)
    logging.info("converted %s (sha256 %s) in %.1f s", smk.input.gguf, record["sha256"], time.time() - start)


run_script(snakemake, main)  # noqa: F821 (injected by Snakemake)

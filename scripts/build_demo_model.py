"""Build the embedded demo model (tiny random Gemma-2 + tokenizer) into the rule's output folder."""

import os

from traitflow.outputs.scripting import run_script


def main(smk):
    from traitflow.demo.spec import build_demo_model

    build_demo_model(os.path.dirname(smk.output.config), smk.params.spec)


run_script(snakemake, main)  # noqa: F821 (injected by Snakemake)

"""The finetuning shift per trait as a bar chart (the report's "Model variants" figure)."""

from traitflow.outputs.scripting import run_script


def main(smk):
    from traitflow.variants.figure import finetuning_shift_figure

    finetuning_shift_figure(smk.input[0], smk.output[0])


run_script(snakemake, main)  # noqa: F821

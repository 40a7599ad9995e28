"""Model variants' tables: scores per (variant, response source), differences on replayed text, finetuning shift."""

from traitflow.outputs.scripting import run_script


def main(smk):
    from traitflow.variants.tables import write_variant_tables

    p = smk.params
    write_variant_tables(p.captures, p.reference, p.layers, p.own_vectors, p.point, p.prompts, smk.output)


run_script(snakemake, main)  # noqa: F821

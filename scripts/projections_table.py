"""One trait's part of the projections table: every prompt's projection and cosine at every token, layer and point."""

import logging

from traitflow.outputs.scripting import run_script


def main(smk):
    from traitflow.experiment.examples import model_special_ids
    from traitflow.outputs.projections_table import build_partition

    p = smk.params
    captures = [(prompt_set, i, path) for (prompt_set, i), path in zip(p.prompts, p.captures)]
    table = build_partition(captures, smk.output.table, p.category, p.prompt_columns, p.position,
                            model_special_ids(p.tokenizer))
    logging.info("%s: %d rows x %d columns from %d captures", smk.output.table, table.num_rows,
                 table.num_columns, len(captures))


run_script(snakemake, main)  # noqa: F821

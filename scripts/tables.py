"""Experiment tables from every dynamics JSON: dynamics_tokens and dynamics_summary, as CSV and Parquet."""

import logging

from traitflow.outputs.scripting import run_script


def main(smk):
    from traitflow.outputs.tables import dynamics_tables, save_table

    tokens, summary = dynamics_tables(smk.params.dynamics, smk.params.prompt_refs, smk.params.prompt_columns)
    save_table(tokens, smk.output.tokens_csv, smk.output.tokens_parquet)
    save_table(summary, smk.output.summary_csv, smk.output.summary_parquet)
    logging.info("%d token rows, %d summary rows from %d files", len(tokens), len(summary), len(smk.params.dynamics))


run_script(snakemake, main)  # noqa: F821

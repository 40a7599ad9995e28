"""Report tables: the dynamics summary and the vector quality of every trait, as small HTML pages."""

import logging

from traitflow.outputs.scripting import run_script


def main(smk):
    from traitflow.outputs.report_tables import (dynamics_summary_html, find_metadata, heldout_table, read_summary,
                                                 vector_quality_html, vector_quality_rows, write_text)

    p = smk.params
    summary = read_summary(smk.input.dynamics_summary)
    write_text(smk.output.dynamics_summary,
               dynamics_summary_html(summary, p.prompts, smk.input.dynamics_summary, p.prompt_columns))
    metadata = find_metadata(p.vectors, smk.input.vector_metadata)
    rows = vector_quality_rows(p.vectors, metadata, p.hidden_size, p.model)
    write_text(smk.output.vector_quality, vector_quality_html(rows, heldout_table(smk.input.vector_metadata, p.vectors)))
    logging.info("dynamics summary: %d rows; vector quality: %d traits", len(summary), len(rows))


run_script(snakemake, main)  # noqa: F821

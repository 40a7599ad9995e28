"""tables/steering.parquet (one row per prompt x condition, the chosen ratios marked) and its summary CSV."""

import json
import logging

from traitflow.outputs.scripting import run_script


def main(smk):
    from traitflow.core.formats import atomic_write
    from traitflow.steering.table import steering_table, summary

    records = []
    for path in smk.input.steered:
        with open(path, encoding="utf-8") as fh:
            records.append(json.load(fh))
    df = steering_table(records, smk.params.max_nll_increase, smk.params.min_distinct2)
    atomic_write(smk.output.parquet, lambda tmp: df.to_parquet(tmp, index=False))
    atomic_write(smk.output.summary, lambda tmp: summary(df).to_csv(tmp, index=False))
    logging.info("%d rows, %d chosen", len(df), int(df["chosen"].sum()))


run_script(snakemake, main)  # noqa: F821

"""The report's dose-response figures: one PNG per steered trait (behaviour and fluency against the ratio)."""

import os

from traitflow.outputs.scripting import run_script


def main(smk):
    import pandas as pd

    from traitflow.steering.figure import save_dose_response
    from traitflow.steering.table import summary

    rates = summary(pd.read_parquet(smk.input.table))
    os.makedirs(smk.output[0], exist_ok=True)
    for trait in smk.params.traits:
        save_dose_response(rates[rates.trait == trait], smk.params.max_nll_increase,
                           os.path.join(smk.output[0], f"{trait.replace('/', '__')}.png"))


run_script(snakemake, main)  # noqa: F821

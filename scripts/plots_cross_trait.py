"""Report cross-trait plots: every trait's trajectory on each reported prompt, one PNG each."""

import os

from traitflow.scripting import run_script


def main(smk):
    from traitflow.formats import load_pt
    from traitflow.plots import cross_trait_figure, save_figure

    p = smk.params
    out_dir = smk.output[0]
    os.makedirs(out_dir, exist_ok=True)
    paths = iter(smk.params.captures)  # trait-major: every prompt of trait 0, then trait 1, ...
    by_trait = {trait: {i: next(paths) for i in p.prompts} for trait in p.traits}
    for i in p.prompts:
        records = {trait: load_pt(by_trait[trait][i]) for trait in p.traits}
        save_figure(cross_trait_figure(records, p.layer, p.point), os.path.join(out_dir, f"prompt_{i}.png"))


run_script(snakemake, main)  # noqa: F821

"""Report heatmaps for one trait: a token x layer PNG per reported prompt."""

import os

from traitflow.scripting import run_script


def main(smk):
    from traitflow.formats import load_pt
    from traitflow.plots import heatmap_figure, save_figure

    out_dir = smk.output[0]
    os.makedirs(out_dir, exist_ok=True)
    for i, path in zip(smk.params.prompts, smk.params.captures):
        save_figure(heatmap_figure(load_pt(path), smk.params.point), os.path.join(out_dir, f"prompt_{i}.png"))


run_script(snakemake, main)  # noqa: F821

"""Report heatmaps for one trait: a token x layer PNG per reported prompt."""

import os

from traitflow.scripting import run_script


def main(smk):
    from traitflow.formats import load_capture, load_json
    from traitflow.plots import heatmap_figure, save_figure

    p = smk.params
    out_dir = smk.output[0]
    os.makedirs(out_dir, exist_ok=True)
    for i, path, response in zip(p.prompts, p.captures, p.responses):
        text = load_json(response)["prompt"]["text"]
        save_figure(heatmap_figure(load_capture(path), p.point, text), os.path.join(out_dir, f"prompt_{i}.png"))


run_script(snakemake, main)  # noqa: F821

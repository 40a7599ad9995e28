"""Report heatmaps for one trait: a token x layer PNG per reported prompt, on one colour scale."""

import os

from traitflow.outputs.scripting import run_script


def main(smk):
    from traitflow.core.formats import load_capture, load_json
    from traitflow.outputs.plots import colour_limit, heatmap_figure, save_figure

    p = smk.params
    out_dir = smk.output[0]
    os.makedirs(out_dir, exist_ok=True)
    captures = [load_capture(p.captures.replace("{file}", f)) for f in p.files]  # figure i: the i-th prompt
    # One colour scale for the trait's figures: the same colour is the same score in every prompt.
    limit = colour_limit(captures, p.point)
    for i, (f, capture) in enumerate(zip(p.files, captures)):
        text = load_json(p.responses.replace("{file}", f))["prompt"]["text"]
        save_figure(heatmap_figure(capture, p.point, text, limit=limit), os.path.join(out_dir, f"prompt_{i}.png"))


run_script(snakemake, main)  # noqa: F821

"""Report cross-trait plots: every trait's trajectory on each reported prompt, one PNG each."""

import os

from traitflow.outputs.scripting import run_script


def main(smk):
    from traitflow.core.formats import load_capture, load_json
    from traitflow.outputs.plots import cross_trait_figure, save_figure

    p = smk.params
    out_dir = smk.output[0]
    os.makedirs(out_dir, exist_ok=True)
    for i, f in enumerate(p.files):  # figure i: the i-th prompt
        captures = {trait: load_capture(p.captures.replace("{trait}", trait).replace("{file}", f))
                    for trait in p.traits}
        text = load_json(p.responses.replace("{file}", f))["prompt"]["text"]
        save_figure(cross_trait_figure(captures, p.layer, p.point, text), os.path.join(out_dir, f"prompt_{i}.png"))


run_script(snakemake, main)  # noqa: F821

"""Write experiments/{exp}/viewer/index.json from the capture files this rule depends on."""

import os

from traitflow.outputs.scripting import run_script


def main(smk):
    from traitflow.core.formats import save_json
    from traitflow.outputs.viewer_index import build_index

    p = smk.params
    exp_dir = os.path.dirname(os.path.dirname(smk.output[0]))  # experiments/{exp}/viewer/index.json
    index = build_index(exp_dir, list(smk.params.responses) + list(smk.params.captures),
                        p.experiment, p.model, p.n_layers, p.traits, p.prompt_refs, p.left_out, p.variants)
    save_json(index, smk.output[0], indent=1)


run_script(snakemake, main)  # noqa: F821

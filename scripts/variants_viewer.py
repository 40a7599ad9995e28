"""Write experiments/{exp}/variants/viewer.json: the viewer's variant picker (viewer/js/variants.js).

Per (variant, response source): its folder (relative to the experiment), its overview (as viewer/overview.json,
computed from its per-trait files), and each source's response texts.
"""

from traitflow.outputs.scripting import run_script


def main(smk):
    from traitflow.variants.viewer import variants_viewer

    p = smk.params
    variants_viewer(p.pairs, p.reference, p.experiment, p.prompt_refs, p.prompt_meta, smk.output[0])


run_script(snakemake, main)  # noqa: F821

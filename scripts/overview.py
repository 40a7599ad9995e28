"""Write experiments/{exp}/viewer/overview.json: per (trait, prompt) response scores at every layer and point."""

from traitflow.outputs.scripting import run_script


def main(smk):
    from traitflow.experiment.examples import model_special_ids
    from traitflow.outputs.overview import overview_from_files, save_overview

    p = smk.params
    paths = iter(p.captures)  # trait-major: every prompt of trait 0, then trait 1, ...
    captures = {trait: {i: next(paths) for i in p.prompts} for trait in p.traits}
    overview = overview_from_files(captures, p.traits, p.prompts, p.experiment, prompt_refs=p.prompt_refs,
                                   prompt_meta=p.prompt_meta, positions=p.positions,
                                   special_ids=model_special_ids(p.tokenizer))
    save_overview(overview, smk.output[0])


run_script(snakemake, main)  # noqa: F821

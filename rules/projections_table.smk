# The projections table: experiments/{exp}/tables/projections/trait={trait}/part-0.parquet, one
# hive partition per trait (traitflow/projections_table.py), one cheap job per trait, no model.
#
# The capture is one job per prompt shard for every trait, so a capture rerun rewrites every
# trait's files. The capture manifests are therefore ancient() inputs here: they order this job
# after the capture, and a missing one still triggers it, but their new mtimes do not. What does
# change a trait's projections triggers its own part only: its vector file, its method and layer
# (params), the responses (generate manifests: an edited prompt rebuilds every part) and the model.


def projections_table_path(trait):
    return f"{EXP}/tables/projections/trait={trait}/part-0.parquet"


def projections_tables():
    """Every trait's part (for all_targets)."""
    return [projections_table_path(t) for t in TRAITS]


localrules:
    projections_table,


rule projections_table:
    input:
        captures_done=ancient([manifest("capture", k) for k in range(len(PLAN.shards))]),
        responses_done=[manifest("generate", k) for k in range(len(PLAN.shards))],
        vector=lambda w: PLAN.traits[w.trait].vector_path,
    output:
        table=projections_table_path("{trait}"),
    params:
        prompt_indices=list(range(len(PLAN.prompts))),
        captures=lambda w: [all_layers_path(w.trait, i, "pt") for i in range(len(PLAN.prompts))],
        vector=lambda w: {"path": PLAN.traits[w.trait].vector_path, "method": PLAN.traits[w.trait].method,
                          "layer": PLAN.traits[w.trait].layer},
        model=config["model"],
        dtype=config["capture"]["dtype"],
    log:
        f"{LOGS}/tables/projections_{{trait}}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/projections_table.py"

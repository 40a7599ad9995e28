# The projections table: experiments/{exp}/tables/projections/trait={trait}/part-0.parquet, one
# hive partition per trait (traitflow/projections_table.py), one cheap job per trait, no model.
#
# A changed trait rebuilds only its own part. The capture is one job per prompt shard for every
# trait, so a capture rerun rewrites every trait's files: the capture manifests are therefore
# ancient() inputs (they order this job after the capture without their mtimes triggering it),
# and what changes one trait's projections reaches its part through a per-trait stamp instead:
# rule projections_table_vector reruns when the trait's vector file is replaced or re-extracted
# or its method/layer change, and its part follows. An edited prompt or another model reruns
# generation, whose manifests (plain inputs) rebuild every part.
#
# Snakemake skips its own rerun checks for a job downstream of one that reruns and follows only
# non-ancient edges from it: so the capture manifests are plain inputs of a part that is missing
# (a new trait, a deleted table), and the stamp is what a replaced vector changes.


def projections_table_path(trait):
    return f"{EXP}/tables/projections/trait={trait}/part-0.parquet"


def projections_tables():
    """Every trait's part (for all_targets)."""
    return [projections_table_path(t) for t in TRAITS]


def projections_table_vector_stamp(trait):
    return f"{MANIFESTS}/{trait}/projections_table_vector.txt"


def projections_table_captures(wildcards):
    done = [manifest("capture", k) for k in range(len(PLAN.shards))]
    return ancient(done) if os.path.exists(projections_table_path(wildcards.trait)) else done


localrules:
    projections_table_vector,
    projections_table,


rule projections_table_vector:
    input:
        vector=lambda w: PLAN.traits[w.trait].vector_path,
    output:
        projections_table_vector_stamp("{trait}"),
    params:
        method=lambda w: PLAN.traits[w.trait].method,
        layer=lambda w: PLAN.traits[w.trait].layer,
    shell:
        "sha256sum {input.vector:q} > {output:q}"


rule projections_table:
    input:
        captures_done=projections_table_captures,
        responses_done=[manifest("generate", k) for k in range(len(PLAN.shards))],
        vector=projections_table_vector_stamp("{trait}"),
    output:
        table=projections_table_path("{trait}"),
    params:
        prompt_indices=list(range(len(PLAN.prompts))),
        captures=lambda w: [all_layers_path(w.trait, i, "pt") for i in range(len(PLAN.prompts))],
        model=config["model"],
        dtype=config["capture"]["dtype"],
    log:
        f"{LOGS}/tables/projections_{{trait}}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/projections_table.py"

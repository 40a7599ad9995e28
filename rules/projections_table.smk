# The projections table: experiments/{exp}/tables/projections/trait={trait}/part-0.parquet, one
# hive partition per trait (traitflow/outputs/projections_table.py), one cheap job per trait, no model.
# A CATEGORY/TRAIT name is URI-encoded in its folder (trait=CATEGORY%2FTRAIT, one folder; every
# reader decodes it), so the rule's wildcard is that folder value, {part}, not {trait}.
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
        sha256=lambda w: user_fingerprints([PLAN.traits[w.trait].vector_path]),  # replaced by an older file too
    log:
        f"{LOGS}/tables/projections_vector_{{trait}}.log",
    conda:
        CONDA_ENV
    shell:
        "sha256sum {input.vector:q} > {output:q} 2> {log:q}"


rule projections_table:
    input:
        captures_done=projections_table_captures,
        responses_done=[manifest("generate", k) for k in range(len(PLAN.shards))],
        vector=lambda w: projections_table_vector_stamp(TRAIT_OF_PART[w.part]),
    output:
        table=f"{PROJECTIONS_DIR}/trait={{part}}/part-0.parquet",
    wildcard_constraints:
        part="|".join(re.escape(p) for p in TRAIT_OF_PART),
    params:
        prompts=[list(ref) for ref in PLAN.prompt_refs],
        category=lambda w: PLAN.traits[TRAIT_OF_PART[w.part]].category,
        captures=lambda w: [all_layers_path(TRAIT_OF_PART[w.part], i, "pt") for i in range(len(PLAN.prompts))],
        prompt_columns=PLAN.prompt_columns,  # ids, fields, labels: an edited label reruns the tables only
        position=lambda w: scoring_position(TRAIT_OF_PART[w.part]),  # the column at_position
        tokenizer=lambda w: PLAN.model_path,  # its special tokens are never at a position
        model=config["model"],
        dtype=config["capture"]["dtype"],
    log:
        f"{LOGS}/tables/projections_{{part}}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/projections_table.py"

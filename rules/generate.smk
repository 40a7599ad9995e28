# One shared response per prompt, written once and read by every trait.
# One rule per prompt shard: a job loads the model once for all its prompts, and
# the shard's prompt texts sit in params, so editing a prompt reruns its shard only.

for shard_id, indices in enumerate(PLAN.shards):

    rule:
        name:
            f"generate_shard{shard_id}"
        input:
            model=PLAN.model_files,
        output:
            files=[response_path(i) for i in indices],
            manifest=manifest("generate", shard_id),
        params:
            **model_params(),
            indices=indices,
            prompts=[PLAN.prompts[i] for i in indices],
            generation=config["generation"],
        log:
            f"{LOGS}/generate/shard{shard_id}.log",
        resources:
            **config["resources"],
        conda:
            CONDA_ENV
        script:
            "../scripts/generate.py"

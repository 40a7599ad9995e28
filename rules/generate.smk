# One shared response per prompt, written once and read by every trait.
# One rule per prompt shard: a job loads the model once for all its prompts, and
# the shard's prompt texts sit in params, so editing a prompt reruns its shard only.
# A response depends only on the model, its prompt, the seed and the sampling
# settings (one random stream per prompt), never on its shard, batch or batch-mates:
# generation.batch_size and capture.max_batch_tokens are speed only, read from the config.

for shard_id, indices in enumerate(PLAN.shards):
    response_files = {"files": [response_path(i) for i in indices]}

    rule:
        name:
            shard_rule("generate", shard_id)
        input:
            model=PLAN.model_files,
        output:
            **declared_outputs("generate", shard_id, response_files),
        params:
            outputs=response_files,  # what the job writes (it declares its manifest: rules/staleness.smk)
            **model_params(),
            prompt_set=PLAN.prompt_set(indices[0]),
            indices=local_indices(indices),
            prompts=[PLAN.prompts[i] for i in indices],
            generation=generation_params(),
        log:
            shard_log("generate", shard_id),
        benchmark:
            benchmark_path("generate", shard_id)
        resources:
            **model_resources(),
        conda:
            CONDA_ENV
        script:
            "../scripts/generate.py"

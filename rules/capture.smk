# All-layers capture: one job per prompt shard FOR EVERY TRAIT. One model load and one
# teacher-forced pass per batch project every trait's vector (and the other dynamics
# methods' vectors) at once; the trait-independent data (attention, residual norms, the
# logit lens) is written once per prompt. A new trait or vector reruns this pass, never generation.

for shard_id, indices in enumerate(PLAN.shards):

    rule:
        name:
            shard_rule("capture", shard_id)
        input:
            responses_done=manifest("generate", shard_id),
            vectors=capture_vectors(),
            model=PLAN.model_files,
        output:
            **capture_outputs(indices),
            manifest=manifest("capture", shard_id),
        params:
            responses=[response_path(i) for i in indices],
            indices=local_indices(indices),
            traits=capture_traits(),
            dynamics=capture_dynamics_params(),
            **model_params(),
            save_json=config["capture"]["save_json"],
            logit_lens_top_k=config["capture"]["logit_lens_top_k"] if config["capture"]["logit_lens"] else 0,
        log:
            shard_log("capture", shard_id),
        benchmark:
            benchmark_path("capture", shard_id)
        resources:
            **model_resources(),
        conda:
            CONDA_ENV
        script:
            "../scripts/capture_all_layers.py"

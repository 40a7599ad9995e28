# Single-layer deep dive. Per prompt shard, one pass writes every configured layer's
# internals once (trait-independent, large); per (trait, shard), a job without a forward
# pass turns them into the trait's decomposition. Adding a trait or editing its vector
# reruns only the second kind; changing single_layer.layers reruns the first for every shard.

if SINGLE_LAYERS:
    for shard_id, indices in enumerate(PLAN.shards):

        rule:
            name:
                f"capture_layer_internals_shard{shard_id}"
            input:
                responses=[response_path(i) for i in indices],
                model=PLAN.model_files,
            output:
                [internals_path(i, l) for i in indices for l in SINGLE_LAYERS],
            params:
                **model_params(),
                layers=SINGLE_LAYERS,
            log:
                f"{LOGS}/capture_layer_internals/shard{shard_id}.log",
            resources:
                **config["resources"],
            conda:
                CONDA_ENV
            script:
                "../scripts/capture_single_layer_internals.py"

        rule:
            name:
                f"capture_single_layer_shard{shard_id}"
            input:
                internals=[internals_path(i, l) for i in indices for l in SINGLE_LAYERS],
                vector=trait_vector,
                model=PLAN.model_files,
            output:
                **single_layer_outputs("{trait}", indices),
            params:
                **model_params(),
                save_json=config["capture"]["save_json"],
                allow_model_mismatch=config["vector"]["allow_model_mismatch"],
                top_neurons=config["single_layer"]["top_neurons"],
                trait=lambda w: w.trait,
                vector=trait_settings,
            log:
                f"{LOGS}/capture_single_layer/{{trait}}_shard{shard_id}.log",
            resources:
                **config["resources"],
            conda:
                CONDA_ENV
            script:
                "../scripts/capture_single_layer.py"

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
                responses_done=manifest("generate", shard_id),
                model=PLAN.model_files,
            output:
                files=[internals_path(i, l) for i in indices for l in SINGLE_LAYERS],
                manifest=manifest("capture_layer_internals", shard_id),
            params:
                **model_params(),
                responses=lambda w, indices=indices: [response_path(i) for i in indices],
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
                internals_done=manifest("capture_layer_internals", shard_id),
                vector=trait_vector,
                model=PLAN.model_files,
            output:
                **single_layer_outputs("{trait}", indices),
                manifest=manifest("capture_single_layer", shard_id, "{trait}"),
            params:
                **model_params(),
                internals=lambda w, indices=indices: [internals_path(i, l) for i in indices for l in SINGLE_LAYERS],
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

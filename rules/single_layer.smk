# Single-layer deep dive. Per prompt shard, one pass writes every configured layer's
# internals once (trait-independent, large); then one CPU job per shard, for every trait,
# turns them into each trait's decomposition from the layers' weights alone (read from the
# checkpoint files: no model load, no forward pass, no GPU). Adding a trait or editing a
# vector reruns only the second kind, once per shard; changing single_layer.layers reruns both.


def single_layer_resources():
    """A model job's resources without the GPU ones: the decomposition job runs on the CPU."""
    return {k: v for k, v in model_resources().items() if not k.startswith("gpu") and k != "gres"}


def single_layer_params():
    """model_params() without the device: the decomposition always runs on the CPU."""
    return {k: v for k, v in model_params().items() if k != "device"}


if SINGLE_LAYERS:
    for shard_id, indices in enumerate(PLAN.shards):

        rule:
            name:
                shard_rule("capture_layer_internals", shard_id)
            input:
                responses_done=manifest("generate", shard_id),
                model=PLAN.model_files,
            output:
                **declared_outputs("capture_layer_internals", shard_id,
                                   {"files": [internals_path(i, l) for i in indices for l in SINGLE_LAYERS]}),
            params:
                outputs={"files": [internals_path(i, l) for i in indices for l in SINGLE_LAYERS]},
                **model_params(),
                responses=lambda w, indices=indices: [response_path(i) for i in indices],
                layers=SINGLE_LAYERS,
            log:
                shard_log("capture_layer_internals", shard_id),
            benchmark:
                benchmark_path("capture_layer_internals", shard_id)
            resources:
                **model_resources(),
            conda:
                CONDA_ENV
            script:
                "../scripts/capture_single_layer_internals.py"

        rule:
            name:
                shard_rule("capture_single_layer", shard_id)
            input:
                internals_done=manifest("capture_layer_internals", shard_id),
                vectors=[trait_plan(t).vector_path for t in CAPTURE_TRAITS],
                model=PLAN.model_files,
            output:
                **declared_outputs("capture_single_layer", shard_id, single_layer_outputs(CAPTURE_TRAITS, indices)),
            params:
                outputs=single_layer_outputs(CAPTURE_TRAITS, indices),  # trait, then prompt, then layer
                **single_layer_params(),
                internals=[internals_path(i, l) for i in indices for l in SINGLE_LAYERS],
                layers=SINGLE_LAYERS,
                save_json=config["capture"]["save_json"],
                allow_model_mismatch=config["vector"]["allow_model_mismatch"],
                top_neurons=config["single_layer"]["top_neurons"],
                traits=CAPTURE_TRAITS,
                vectors={t: {"method": trait_plan(t).method, "layer": trait_plan(t).layer} for t in CAPTURE_TRAITS},
                vector_sha256=user_fingerprints([trait_plan(t).vector_path for t in CAPTURE_TRAITS]),
            log:
                shard_log("capture_single_layer", shard_id),
            benchmark:
                benchmark_path("capture_single_layer", shard_id)
            resources:
                **single_layer_resources(),
            conda:
                CONDA_ENV
            script:
                "../scripts/capture_single_layer.py"

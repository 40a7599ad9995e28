# All-layers capture: one job per (trait, prompt shard), one teacher-forced pass per batch.

for shard_id, indices in enumerate(PLAN.shards):

    rule:
        name:
            f"capture_all_layers_shard{shard_id}"
        input:
            responses_done=manifest("generate", shard_id),
            vector=trait_vector,
            model=PLAN.model_files,
        output:
            **capture_outputs("{trait}", indices),
            manifest=manifest("capture_all_layers", shard_id, "{trait}"),
        params:
            responses=lambda w, indices=indices: [response_path(i) for i in indices],
            **model_params(),
            save_json=config["capture"]["save_json"],
            allow_model_mismatch=config["vector"]["allow_model_mismatch"],
            trait=lambda w: w.trait,
            vector=trait_settings,
        log:
            f"{LOGS}/capture_all_layers/{{trait}}_shard{shard_id}.log",
        resources:
            **config["resources"],
        conda:
            CONDA_ENV
        script:
            "../scripts/capture_all_layers.py"

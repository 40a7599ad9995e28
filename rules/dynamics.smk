# Dynamics: per (trait, prompt) scores at one layer and point, and their metrics.
# One job per (trait, prompt shard), like capture. The trait's own method is read
# from its all-layers capture; other methods share one teacher-forced pass per job,
# and a job whose methods are all captured loads no model.

for shard_id, indices in enumerate(PLAN.shards):
    captures_done, capture_files = dynamics_captures(shard_id, indices)

    rule:
        name:
            f"dynamics_shard{shard_id}"
        input:
            responses_done=manifest("generate", shard_id),
            captures_done=captures_done,
            vectors=dynamics_vectors,
            model=dynamics_model_files,
        output:
            files=[dynamics_path("{trait}", i) for i in indices],
            manifest=manifest("dynamics", shard_id, "{trait}"),
        params:
            responses=lambda w, indices=indices: [response_path(i) for i in indices],
            captures=capture_files,
            **model_params(),
            allow_model_mismatch=config["vector"]["allow_model_mismatch"],
            trait=lambda w: w.trait,
            vector=trait_settings,
            layer=lambda w: DYNAMICS[w.trait]["layer"],
            methods=lambda w: DYNAMICS[w.trait]["methods"],
            point=config["dynamics"]["point"],
            span=config["dynamics"]["span"],
            commitment_threshold=config["dynamics"]["commitment_threshold"],
            persistence_fraction=config["dynamics"]["persistence_fraction"],
        log:
            f"{LOGS}/dynamics/{{trait}}_shard{shard_id}.log",
        resources:
            **dynamics_resources(),
        conda:
            CONDA_ENV
        script:
            "../scripts/dynamics.py"

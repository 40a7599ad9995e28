# Dynamics: per (trait, prompt) scores at one layer and point, and their metrics.
# One job per prompt shard for every trait, with no model: the trait's own method is
# read from its all-layers projections, other methods from the scores the capture pass
# made of their vectors (method_scores). Changing a threshold reruns only these jobs.

for shard_id, indices in enumerate(PLAN.shards):
    dynamics_files = {"files": [dynamics_path(t, i) for t in CAPTURE_TRAITS for i in indices]}

    rule:
        name:
            shard_rule("dynamics", shard_id)
        input:
            captures_done=manifest("capture", shard_id),
        output:
            **declared_outputs("dynamics", shard_id, dynamics_files),
        params:
            outputs=dynamics_files,  # what the job writes (it declares its manifest: rules/staleness.smk)
            responses=[response_path(i) for i in indices],
            captures={t: [all_layers_path(t, i, "pt") for i in indices] for t in CAPTURE_TRAITS},
            plan={t: {"layer": DYNAMICS[t]["layer"], "vector_layer": trait_plan(t).layer,
                      "methods": DYNAMICS[t]["methods"]} for t in CAPTURE_TRAITS},
            point=config["dynamics"]["point"],
            span=config["dynamics"]["span"],
            settings={k: v for k, v in config["dynamics"].items() if k not in ("layer", "point", "span", "methods")},
        log:
            shard_log("dynamics", shard_id),
        conda:
            CONDA_ENV
        script:
            "../scripts/dynamics.py"

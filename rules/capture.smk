# All-layers capture: one job per prompt shard FOR EVERY TRAIT. One model load and one
# teacher-forced pass per batch project every trait's vector (and the other dynamics
# methods' vectors) at once; the trait-independent data (attention, residual norms, the
# logit lens) is written once per prompt. A new trait or vector reruns this pass, never generation.
from traitflow.model.lens import plan_lens

try:  # capture.logit_lens_layers against the model's layers: one line at plan time, before any job
    LENS_TOP_K, LENS_LAYERS = plan_lens(config["capture"], PLAN.n_layers)
except TraitflowError as err:
    exit_with_error("plan", err)

for shard_id, indices in enumerate(PLAN.shards):

    rule:
        name:
            shard_rule("capture", shard_id)
        input:
            responses_done=manifest("generate", shard_id),
            vectors=capture_vectors(),
            model=PLAN.model_files,
        output:
            **declared_outputs("capture", shard_id, capture_outputs(indices)),
        params:
            outputs=capture_outputs(indices),  # what the job writes (it declares its manifest: rules/staleness.smk)
            responses=[response_path(i) for i in indices],
            indices=local_indices(indices),
            traits=capture_traits(),
            dynamics=capture_dynamics_params(),
            **model_params(),
            save_json=config["capture"]["save_json"],
            logit_lens_top_k=LENS_TOP_K,
            logit_lens_layers=LENS_LAYERS,  # which layers the shared files' lens covers
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

# Model variants (config `variants:`; README "Model variants"). The vector variant is the experiment's
# model: its own responses and captures are the ordinary ones (rules/generate.smk, rules/capture.smk).
# Here, per prompt shard: every other variant generates its own responses, and every other (variant,
# response source) pair is captured teacher-forced under experiments/{exp}/variants/ by the same
# capture code; then one job joins them into tables, one draws the finetuning shift, and one writes what
# the viewer's variant picker reads (each pair's overview: viewer/js/variants.js).
# Each job's params carry its own variant's model (and its fingerprint) and the source's responses, so
# adding a variant or changing one variant's model reruns only the jobs that read it.
# Without `variants:` nothing here is planned: a one-model experiment's jobs and files stay as they were.
include: "variants_plan.smk"


for v in VARIANTS[1:]:
    for shard_id, indices in enumerate(PLAN.shards):
        job = variant_rule("generate", v.name, None, shard_id)
        response_files = {"files": [rebase(response_path(i), v.name, v.name) for i in indices]}

        rule:
            name:
                job
            input:
                model=v.model_files,
            output:
                **variant_outputs(job, response_files),
            params:
                outputs=response_files,
                **variant_model_params(v),
                prompt_set=PLAN.prompt_set(indices[0]),
                indices=local_indices(indices),
                prompts=[PLAN.prompts[i] for i in indices],
                generation=generation_params(),
            log:
                f"{LOGS}/variants/{job}.log",
            benchmark:
                benchmark_path("variants", name=job)
            resources:
                **model_resources(),
            conda:
                CONDA_ENV
            script:
                "../scripts/generate.py"


for variant, source in VARIANT_PAIRS:
    v = VARIANT[variant]
    for shard_id, indices in enumerate(PLAN.shards):
        job = variant_rule("capture", variant, source, shard_id)
        files = {ext: [rebase(p, variant, source) for p in paths] for ext, paths in capture_outputs(indices).items()}

        rule:
            name:
                job
            input:
                responses_done=generate_manifest(source, shard_id),
                vectors=sorted(set(capture_vectors()) | set(v.vectors.values())),
                model=v.model_files,
            output:
                **variant_outputs(job, files),
            params:
                outputs=files,
                responses=[rebase(response_path(i), source, source) for i in indices],
                indices=local_indices(indices),
                traits=variant_traits(v),
                dynamics=capture_dynamics_params(),
                **variant_model_params(v),
                save_json=config["capture"]["save_json"],
                logit_lens_top_k=LENS_TOP_K,
                logit_lens_layers=LENS_LAYERS,
            log:
                f"{LOGS}/variants/{job}.log",
            benchmark:
                benchmark_path("variants", name=job)
            resources:
                **model_resources(),
            conda:
                CONDA_ENV
            script:
                "../scripts/variants_capture.py"


if VARIANTS:

    localrules:
        variants_figure,

    rule variants_tables:
        input:
            captures_done=[capture_manifest(v, s, k) for v, s in pairs(VARIANTS) for k in range(len(PLAN.shards))],
        output:
            **VARIANT_TABLES,
        params:
            captures=[{"variant": v, "responses_from": s, "files": pair_captures(v, s)} for v, s in pairs(VARIANTS)],
            reference=REF,
            layers={t: trait_plan(t).layer for t in TRAITS},
            own_vectors={v.name: sorted(set(v.vectors) & set(TRAITS)) for v in VARIANTS},
            point=config["dynamics"]["point"],
            prompts={"prompt_set": [PLAN.prompt_set(g) for g in range(len(PLAN.prompts))],
                     "prompt_index": [PLAN.prompt_index(g) for g in range(len(PLAN.prompts))],
                     "prompt_id": PLAN.prompt_columns.get("prompt_id")},
        log:
            f"{LOGS}/variants/variants_tables.log",
        conda:
            CONDA_ENV
        script:
            "../scripts/variants_tables.py"

    rule variants_viewer:
        input:
            captures_done=[capture_manifest(v, s, k) for v, s in pairs(VARIANTS) for k in range(len(PLAN.shards))],
        output:
            f"{EXP}/variants/viewer.json",
        params:
            pairs=viewer_pairs(),
            reference=REF,
            experiment=PLAN.experiment,
            prompt_refs=[list(ref) for ref in PLAN.prompt_refs],
            prompt_meta=PLAN.prompt_meta,
        log:
            f"{LOGS}/variants/variants_viewer.log",
        conda:
            CONDA_ENV
        script:
            "../scripts/variants_viewer.py"

    rule variants_figure:
        input:
            VARIANT_TABLES["finetuning_shift_csv"],
        output:
            report(VARIANT_FIGURE, category="Model variants", caption="../report/variants.rst"),
        log:
            f"{LOGS}/variants/variants_figure.log",
        conda:
            CONDA_ENV
        script:
            "../scripts/variants_figure.py"


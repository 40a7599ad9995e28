# Contrastive examples -> mean_diff and probe vectors at every layer and vector.position, per trait
# (each position but the default, all, in its own folder: rules/common.smk extracted_vectors).

if EXTRACT_TRAITS:
    # The examples' content hashes: an edited examples file reruns the extraction whatever its date.
    EXAMPLES_SHA256 = {t: user_fingerprints(sorted(trait_plan(t).examples.values())) for t in EXTRACT_TRAITS}

    rule extract_vectors:
        input:
            # where config layout says (outputs always go under our own experiment folder)
            positive=lambda w: trait_plan(w.trait).examples["positive"],
            negative=lambda w: trait_plan(w.trait).examples["negative"],
            model=PLAN.model_files,
        output:
            extracted_vectors(),
            manifest=extraction_manifest("{trait}"),  # each vector's sha256: a vector replaced later is told apart
        wildcard_constraints:
            trait="|".join(EXTRACT_TRAITS),
        params:
            **model_params(),
            examples_sha256=lambda w: EXAMPLES_SHA256[w.trait],
            positions=lambda w: trait_plan(w.trait).positions,  # the first is the trait's vector
            presentation=lambda w: trait_plan(w.trait).presentation,
            # prompts are formatted as generation formats them (raw lines never are)
            chat_template=lambda w: trait_plan(w.trait).presentation != "raw" and config["generation"]["chat_template"],
        log:
            f"{LOGS}/extract_vectors/{{trait}}.log",
        benchmark:
            benchmark_path("extract_vectors", name="{trait}")
        resources:
            **model_resources(),
        conda:
            CONDA_ENV
        script:
            "../scripts/extract_vectors.py"

# Contrastive examples -> mean_diff and probe vectors at every layer, per trait.

if EXTRACT_TRAITS:

    rule extract_vectors:
        input:
            positive=f"{EXP}/{{trait}}/extraction/positive.txt",
            negative=f"{EXP}/{{trait}}/extraction/negative.txt",
            model=PLAN.model_files,
        output:
            extracted_vectors(),
        wildcard_constraints:
            trait="|".join(EXTRACT_TRAITS),
        params:
            **model_params(),
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

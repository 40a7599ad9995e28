# Experiment tables: every (trait, prompt) dynamics JSON as tidy CSV + Parquet for notebooks.


localrules:
    dynamics_tables,


rule dynamics_tables:
    input:
        dynamics_done=manifests("dynamics"),
    output:
        **dynamics_tables_outputs(),
    params:
        dynamics=lambda w: [dynamics_path(t, i) for t in TRAITS for i in range(len(PLAN.prompts))],
        prompt_refs=[list(ref) for ref in PLAN.prompt_refs],
        prompt_columns=PLAN.prompt_columns,  # ids, fields, labels: an edited label reruns the tables only
    log:
        f"{LOGS}/tables/dynamics.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/tables.py"

# The browser viewer's index: which traits, prompts and JSON files an experiment has.
# It depends on every file it lists, so it is rebuilt whenever a capture changes.


localrules:
    viewer_index,


rule viewer_index:
    input:
        responses=[response_path(i) for i in range(len(PLAN.prompts))],
        captures=viewer_files(),
    output:
        f"{EXP}/viewer/index.json",
    params:
        experiment=PLAN.experiment,
        model=config["model"],
        n_layers=PLAN.n_layers,
        traits={t.name: {"method": t.method, "vector_layer": t.layer} for t in PLAN.ok_traits},
    log:
        f"{LOGS}/viewer_index.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/viewer_index.py"

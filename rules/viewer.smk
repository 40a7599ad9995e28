# The browser viewer's index: which traits, prompts and JSON files an experiment has.
# It depends on the manifests of every job whose files it lists, so it is rebuilt whenever a capture is.


localrules:
    viewer_index,


rule viewer_index:
    input:
        responses_done=manifests("generate"),
        captures_done=trait_manifests(TRAITS),
    output:
        f"{EXP}/viewer/index.json",
    params:
        responses=lambda w: [response_path(i) for i in range(len(PLAN.prompts))],
        captures=lambda w: viewer_files(),
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

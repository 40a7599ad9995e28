# The browser viewer's files: its index (which traits, prompts and files an experiment has) and
# the experiment overview (one number per trait, prompt, layer and point; the viewer's first screen).
# Both depend on the manifests of every job whose files they read, so they are rebuilt whenever a
# capture is. The index depends on the overview, so every target that builds one builds both.


localrules:
    viewer_index,
    viewer_overview,


rule viewer_overview:
    input:
        captures_done=manifests("capture"),
    output:
        f"{EXP}/viewer/overview.json",
    params:
        captures=[all_layers_path(t, i, "pt") for t in TRAITS for i in range(len(PLAN.prompts))],  # trait-major
        traits=TRAITS,
        prompts=list(range(len(PLAN.prompts))),
        experiment=PLAN.experiment,
        prompt_refs=[list(ref) for ref in PLAN.prompt_refs],
        prompt_meta=PLAN.prompt_meta,  # ids, fields, labels: the viewer sorts and groups by a label
        positions={t: scoring_position(t) for t in TRAITS},  # each trait's prompts also scored where its vector was read
        tokenizer=lambda w: PLAN.model_path,  # its special tokens are never at a position
    log:
        f"{LOGS}/viewer_overview.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/overview.py"


rule viewer_index:
    input:
        responses_done=manifests("generate"),
        captures_done=stage_manifests(),
        overview=f"{EXP}/viewer/overview.json",
    output:
        f"{EXP}/viewer/index.json",
    params:
        responses=lambda w: [response_path(i) for i in range(len(PLAN.prompts))],
        captures=lambda w: viewer_files() + [f"{EXP}/viewer/overview.json"],
        experiment=PLAN.experiment,
        model=config["model"],
        n_layers=PLAN.n_layers,
        traits={t.name: {"method": t.method, "vector_layer": t.layer} for t in PLAN.ok_traits},
        prompt_refs=[list(ref) for ref in PLAN.prompt_refs],
        left_out={t.name: t.error for t in PLAN.traits.values() if t.error},
        variants=lambda w: len(VARIANTS) > 1,  # the viewer asks for variants/viewer.json only then (no 404)
    log:
        f"{LOGS}/viewer_index.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/viewer_index.py"

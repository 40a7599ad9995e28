# Figures for `snakemake --report report.html`: a token x layer heatmap per (trait, prompt)
# and a cross-trait trajectory plot per prompt, for the first report.max_prompts prompts.
# Coarse jobs: one per trait for heatmaps, one for all cross-trait plots (one matplotlib import each).
# They read the per-trait .pt through traitflow.formats.load_capture (projections + the shared norms),
# so they depend on the capture manifests of the shards holding the reported prompts.

report: "../report/workflow.rst"


localrules:
    report_heatmaps,
    report_cross_trait,


rule report_heatmaps:
    input:
        captures_done=[manifest("capture", k) for k in shards_of(report_prompts())],
    output:
        report(
            directory(f"{EXP}/report/heatmaps/{{trait}}"),
            patterns=["prompt_{prompt}.png"],
            caption="../report/heatmap.rst",
            category="Token x layer heatmaps",
            subcategory="{trait}",
            labels={"trait": "{trait}", "prompt": "{prompt}"},
        ),
    params:
        captures=lambda w: [all_layers_path(w.trait, i, "pt") for i in report_prompts()],
        responses=[response_path(i) for i in report_prompts()],
        prompts=report_prompts(),
        point=config["report"]["point"],
    log:
        f"{LOGS}/report/heatmaps_{{trait}}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/plots_heatmaps.py"


rule report_cross_trait:
    input:
        captures_done=[manifest("capture", k) for k in shards_of(report_prompts())],
    output:
        report(
            directory(f"{EXP}/report/cross_trait"),
            patterns=["prompt_{prompt}.png"],
            caption="../report/cross_trait.rst",
            category="Cross-trait trajectories",
            labels={"prompt": "{prompt}"},
        ),
    params:
        captures=lambda w: [all_layers_path(t, i, "pt") for t in TRAITS for i in report_prompts()],
        responses=[response_path(i) for i in report_prompts()],
        traits=TRAITS,
        prompts=report_prompts(),
        layer=report_layer(),
        point=config["report"]["point"],
    log:
        f"{LOGS}/report/cross_trait.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/plots_cross_trait.py"

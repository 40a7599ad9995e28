# `snakemake --report report.html --config experiment=NAME`: what the report holds.
#   1. Tables          vector quality per trait and the dynamics summary (small HTML pages)
#   2. Cross-trait     one plot per reported prompt: every trait's score per token at one layer
#   3. Heatmaps        a token x layer heatmap per (trait, reported prompt)
# Figures cover the first report.max_prompts prompts; the tables cover every prompt in medians.
# Coarse jobs: one per trait for heatmaps, one for all cross-trait plots (one matplotlib import each),
# one for the tables (pandas). Figure jobs read the per-trait .pt through traitflow.core.formats.load_capture,
# so they depend on the capture manifests of the shards holding the reported prompts.
# A report entry's details are its job's wildcards and params, so params stay short: path patterns
# ({file}, {trait} filled in by the scripts) and file stems, never one path per (trait, prompt).
from traitflow.outputs.report_tables import (file_pattern, file_stems, plan_vectors, prompt_ids, prompt_labels,
                                     vector_metadata_files)

report: "../report/workflow.rst"


localrules:
    report_heatmaps,
    report_cross_trait,
    report_tables,


RESPONSES_DIR = f"{EXP}/inference/responses"
REPORT_FILES = file_stems(response_path, RESPONSES_DIR, report_prompts())  # figure prompt_{g}.png: REPORT_FILES[g]
FIRST_FILE = file_stems(response_path, RESPONSES_DIR, [0])[0]  # the stem the path patterns are made from


rule report_heatmaps:
    input:
        captures_done=[manifest("capture", k) for k in shards_of(report_prompts())],
    output:
        report(
            directory(f"{EXP}/report/heatmaps/{{trait}}"),
            patterns=["prompt_{prompt}.png"],
            caption="../report/heatmap.rst",
            category="3. Token x layer heatmaps",
            subcategory="{trait}",
            labels=lambda w: prompt_labels(w, PLAN.prompts, len(REPORT_FILES)),
        ),
    params:
        files=REPORT_FILES,  # the first report.max_prompts prompts
        point=config["report"]["point"],
        captures=lambda w: file_pattern(all_layers_path(w.trait, 0, "pt"), FIRST_FILE),
        responses=lambda w: file_pattern(response_path(0), FIRST_FILE),
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
            category="2. Cross-trait trajectories",
            labels=lambda w: prompt_labels(w, PLAN.prompts, len(REPORT_FILES)),
        ),
    params:
        files=REPORT_FILES,
        traits=TRAITS,
        layer=report_layer(),
        point=config["report"]["point"],
        captures=lambda w: file_pattern(all_layers_path("{trait}", 0, "pt"), FIRST_FILE),
        responses=lambda w: file_pattern(response_path(0), FIRST_FILE),
    log:
        f"{LOGS}/report/cross_trait.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/plots_cross_trait.py"


rule report_tables:
    input:
        dynamics_summary=dynamics_tables_outputs()["summary_csv"],
        vector_metadata=lambda w: vector_metadata_files(PLAN),
    output:
        vector_quality=report(REPORT_TABLES["vector_quality"], caption="../report/vector_quality.rst",
                              category="1. Tables", labels={"table": "vector quality per trait"}),
        dynamics_summary=report(REPORT_TABLES["dynamics_summary"], caption="../report/dynamics_summary.rst",
                                category="1. Tables", labels={"table": "dynamics summary"}),
    params:
        prompts=prompt_ids(PLAN, report_prompts()),  # per-prompt dynamics rows: the prompts with figures
        prompt_columns=list(PLAN.prompt_columns),  # shown beside each prompt, never summarised as metrics
        vectors=plan_vectors(PLAN),
        hidden_size=PLAN.hidden_size,
        model=config["model"],
    log:
        f"{LOGS}/report/tables.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/report_tables.py"


if STEERING:  # rules/steering.smk

    localrules:
        report_steering,

    rule report_steering:
        input:
            table=STEERING_FILES["parquet"],
        output:
            report(
                directory(STEERING_FILES["figures"]),
                patterns=["{trait}.png"],
                caption="../report/steering.rst",
                category="4. Steering: does the vector do anything?",
            ),
        params:
            traits=STEER_TRAITS,
            max_nll_increase=config["steering"]["max_nll_increase"],
        log:
            f"{LOGS}/report/steering.log",
        conda:
            CONDA_ENV
        script:
            "../scripts/steer_plots.py"

# `snakemake --report report.html --config experiment=NAME`: what the report holds.
#   1. Tables          vector quality per trait and the dynamics summary (small HTML pages)
#   2. Cross-trait     one plot per reported prompt: every trait's score per token at one layer
#   3. Heatmaps        a token x layer heatmap per (trait, reported prompt)
# Figures cover the first report.max_prompts prompts; the tables cover every prompt in medians.
# Coarse jobs: one per trait for heatmaps, one for all cross-trait plots (one matplotlib import each),
# one for the tables (pandas). Figure jobs read the per-trait .pt through traitflow.formats.load_capture,
# so they depend on the capture manifests of the shards holding the reported prompts.
# A report entry's details are its job's wildcards and params, so params stay short: path patterns
# ({prompt}, {trait} filled in by the script) and counts, never one path per prompt.
from traitflow.report_tables import prompt_number, report_label
from traitflow.vectors import EXTRACTED_METHODS, metadata_path

report: "../report/workflow.rst"


localrules:
    report_heatmaps,
    report_cross_trait,
    report_tables,


def report_prompt_labels(wildcards):
    """Labels of a reported prompt's figure: its number (zero-padded: the report sorts labels as text), then
    its text, shortened. One label, not two: the report turns a second label with two values into a toggle."""
    i = int(wildcards.prompt)
    labels = {"prompt": f"{prompt_number(i, len(report_prompts()))}: {report_label(PLAN.prompts[i])}"}
    if "trait" in wildcards.keys():
        labels["trait"] = wildcards.trait
    return labels


def report_vectors():
    """{trait: method, layer, vector path, whether extraction made it}: what the vector quality table reads."""
    return {t.name: {"method": t.method, "layer": t.layer, "vector": t.vector_path,
                     "extracted": t.extract and t.method in EXTRACTED_METHODS}
            for t in PLAN.ok_traits}


def report_vector_metadata(wildcards):
    """The metadata file of each trait's vector: extraction writes it; a vector brought in may have one."""
    return [metadata_path(v["vector"]) for v in report_vectors().values()
            if v["extracted"] or os.path.exists(metadata_path(v["vector"]))]


REPORT_TABLES = {name: f"{EXP}/report/tables/{name}.html" for name in ("vector_quality", "dynamics_summary")}

_figure_targets = report_targets  # common.smk's: the figure folders


def report_targets():
    """Every output the report shows: the figures (none when report.max_prompts is 0) and the tables."""
    return _figure_targets() + list(REPORT_TABLES.values())


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
            labels=report_prompt_labels,
        ),
    params:
        n_prompts=len(report_prompts()),  # the first N prompts
        point=config["report"]["point"],
        captures=lambda w: all_layers_path(w.trait, "{prompt}", "pt"),
        responses=lambda w: response_path("{prompt}"),
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
            labels=report_prompt_labels,
        ),
    params:
        n_prompts=len(report_prompts()),
        traits=TRAITS,
        layer=report_layer(),
        point=config["report"]["point"],
        captures=lambda w: all_layers_path("{trait}", "{prompt}", "pt"),
        responses=lambda w: response_path("{prompt}"),
    log:
        f"{LOGS}/report/cross_trait.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/plots_cross_trait.py"


rule report_tables:
    input:
        dynamics_summary=dynamics_tables_outputs()["summary_csv"],
        vector_metadata=report_vector_metadata,
    output:
        vector_quality=report(REPORT_TABLES["vector_quality"], caption="../report/vector_quality.rst",
                              category="1. Tables", labels={"table": "vector quality per trait"}),
        dynamics_summary=report(REPORT_TABLES["dynamics_summary"], caption="../report/dynamics_summary.rst",
                                category="1. Tables", labels={"table": "dynamics summary"}),
    params:
        n_prompts=len(report_prompts()),  # per-prompt dynamics rows for the prompts with figures
        vectors=lambda w: report_vectors(),
        hidden_size=PLAN.hidden_size,
        model=config["model"],
    log:
        f"{LOGS}/report/tables.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/report_tables.py"

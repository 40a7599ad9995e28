# `snakemake --report report.html --config experiment=NAME`: what the report holds.
#   1. Tables          vector quality per trait and the dynamics summary (small HTML pages)
#   2. Cross-trait     one plot per reported prompt: every trait's score per token at one layer
#   3. Heatmaps        a token x layer heatmap per (trait, reported prompt)
# Figures cover the first report.max_prompts prompts; the tables cover every prompt in medians.
# Coarse jobs: one per trait for heatmaps, one for all cross-trait plots (one matplotlib import each),
# one for the tables (pandas). Figure jobs read the per-trait .pt through traitflow.formats.load_capture,
# so they depend on the capture manifests of the shards holding the reported prompts.
# A report entry's details are its job's wildcards and params, so params stay short: path patterns
# ({file}, {trait} filled in by the scripts) and file stems, never one path per (trait, prompt).
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
    """{trait: method, layer, whether extraction made the vector}: the vector quality table's rows."""
    return {t.name: {"method": t.method, "layer": t.layer, "extracted": t.extract and t.method in EXTRACTED_METHODS}
            for t in PLAN.ok_traits}


def report_vector_metadata(wildcards):
    """The metadata file of each trait's vector: extraction writes it; a vector brought in may have one."""
    return [metadata_path(t.vector_path) for t in PLAN.ok_traits
            if report_vectors()[t.name]["extracted"] or os.path.exists(metadata_path(t.vector_path))]


def report_stem(g):
    """Prompt g's file stem: prompt_{i}, or {set}/prompt_{i} for a named prompt set (as response_path names it)."""
    return response_path(g)[len(f"{EXP}/inference/responses/"): -len(".json")]


def report_files():
    """The reported prompts' file stems, in order: figure prompt_{g}.png shows report_files()[g]."""
    return [report_stem(g) for g in report_prompts()]


def file_pattern(path):
    """A path helper's answer for prompt 0 as a pattern, '{file}' where the stem goes (the scripts fill it in):
    params stay one pattern long whatever the number of prompts."""
    tail = report_stem(0) + os.path.splitext(path)[1]
    if not path.endswith(tail):
        raise ValueError(f"{path} does not end with {tail}")
    return path[: -len(tail)] + "{file}" + os.path.splitext(path)[1]


def report_prompt_ids():
    """{prompt set: [index within it]} of the reported prompts (how the dynamics table names prompts)."""
    ids = {}
    for g in report_prompts():
        ids.setdefault(PLAN.prompt_set(g), []).append(PLAN.prompt_index(g))
    return ids


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
        files=report_files(),  # the first report.max_prompts prompts; figure i shows files[i]
        point=config["report"]["point"],
        captures=lambda w: file_pattern(all_layers_path(w.trait, 0, "pt")),
        responses=lambda w: file_pattern(response_path(0)),
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
        files=report_files(),
        traits=TRAITS,
        layer=report_layer(),
        point=config["report"]["point"],
        captures=lambda w: file_pattern(all_layers_path("{trait}", 0, "pt")),
        responses=lambda w: file_pattern(response_path(0)),
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
        prompts=report_prompt_ids(),  # per-prompt dynamics rows for the prompts with figures
        vectors=lambda w: report_vectors(),
        hidden_size=PLAN.hidden_size,
        model=config["model"],
    log:
        f"{LOGS}/report/tables.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/report_tables.py"

# traitflow: trait vectors through a language model, token by token and layer by layer.
# Stages live in rules/*.smk; path helpers and config parsing in rules/common.smk.
import os

from snakemake.utils import min_version

from traitflow.experiment.config_files import config_has_settings
from traitflow.model.modeling import read_auto_or_value
from traitflow.plan.writable import stop_if_unwritable
from traitflow.variants.plan import use_vector_variant_model

min_version("9.0")

config_has_settings("config.yaml")  # a bad file is one line naming it, not Snakemake's nameless message


configfile: "config.yaml"


# An experiment may carry its own settings, experiments/{experiment}/config.yaml: merged over
# config.yaml and under --configfile/--config (Snakemake re-applies those after every configfile).
EXPERIMENT_CONFIG = f"experiments/{config.get('experiment')}/config.yaml"
# Empty (or only comments): nothing to merge. A list, a scalar, bad YAML, a key given twice: one line, exit 1.
if isinstance(config.get("experiment"), str) and config_has_settings(EXPERIMENT_CONFIG):

    configfile: EXPERIMENT_CONFIG


# `--config 'resources={gpu: 1}'` gives the string '1' (in config and in the overrides common.smk re-reads)
read_auto_or_value(config)
read_auto_or_value(workflow.config_settings.config)
use_vector_variant_model(config)  # with `variants:`, the vector variant's model is the experiment's model


include: "rules/common.smk"


MODEL_SETTINGS = resolve_model_settings()  # dtype, device, GPUs, memory, chat template: concrete from here on


include: "rules/model.smk"
include: "rules/extract.smk"
include: "rules/generate.smk"
include: "rules/capture.smk"
include: "rules/single_layer.smk"
include: "rules/dynamics.smk"
include: "rules/tables.smk"
include: "rules/projections_table.smk"
include: "rules/steering.smk"
include: "rules/viewer.smk"
include: "rules/report.smk"
include: "rules/variants.smk"


rule all:
    default_target: True
    input:
        all_targets(),


onstart:
    # A read-only folder or a full disk: one line naming the folder, then the summary, before any job starts.
    stop_if_unwritable(workflow.dag.needrun_jobs(), lambda: print_summary(workflow))


onsuccess:
    print_summary(workflow)


onerror:
    print_summary(workflow)

# traitflow: trait vectors through a language model, token by token and layer by layer.
# Stages live in rules/*.smk; path helpers and config parsing in rules/common.smk.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/model.smk"
include: "rules/extract.smk"
include: "rules/generate.smk"
include: "rules/capture.smk"
include: "rules/single_layer.smk"
include: "rules/dynamics.smk"
include: "rules/tables.smk"
include: "rules/viewer.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),


onsuccess:
    print_summary()


onerror:
    print_summary()

# Config validation, the plan (traits, vectors, prompt shards) and path helpers.
import json
import os
import time

from snakemake.utils import validate

from traitflow.dynamics import plan_dynamics
from traitflow.errors import TraitflowError, exit_with_error
from traitflow.summary import print_run_summary
from traitflow.vectors import EXTRACTED_METHODS, metadata_path, vector_filename
from traitflow.workflow import DEMO_MODEL_DIR, check_config, make_plan

RUN_START = time.time()
try:  # every problem found before a model loads is one line on screen, no traceback
    check_config(config, f"{workflow.basedir}/schemas/config.schema.yaml",
                 [*workflow.config_settings.configfiles, *workflow.configfiles], workflow.config_settings.config)
    validate(config, "../schemas/config.schema.yaml", set_default=True)  # fills in the defaults
    PLAN = make_plan(config)
    DYNAMICS = plan_dynamics(PLAN, config["dynamics"])  # {trait: {layer, methods}}
except TraitflowError as err:
    exit_with_error("plan", err)

EXP = PLAN.exp_dir
LOGS = f"logs/{PLAN.experiment}"
MANIFESTS = f"manifests/{PLAN.experiment}"
TRAITS = [t.name for t in PLAN.ok_traits]
EXTRACT_TRAITS = [t.name for t in PLAN.ok_traits if t.extract]
CONDA_ENV = "../envs/traitflow.yaml"


wildcard_constraints:
    trait="|".join(TRAITS),


def model_params():
    """What every model-loading script gets; model identity and dtype trigger reruns.

    Device and batch sizes change speed, not results: scripts read them from
    snakemake.config so that changing them reruns nothing.
    """
    return {
        "model": config["model"],
        "model_path": lambda wildcards: PLAN.model_path,
        "dtype": config["capture"]["dtype"],
    }


def manifest(stage, shard_id, trait="_shared"):
    """A job's manifest (written last, listing its files): what downstream rules depend on.

    Depending on per-prompt files instead makes Snakemake match each path against
    every output pattern under experiments/{exp}/: ~20 s of planning at 10 traits
    x 200 prompts. "_shared" cannot clash with a trait (names start alphanumeric).
    """
    return f"{MANIFESTS}/{trait}/{stage}_shard{shard_id}.json"


def manifests(stage, traits=None):
    owners = traits if traits is not None else ["_shared"]
    return [manifest(stage, k, t) for t in owners for k in range(len(PLAN.shards))]


def shards_of(indices):
    return sorted({k for k, shard in enumerate(PLAN.shards) if set(shard) & set(indices)})


def response_path(i):
    return f"{EXP}/inference/responses/prompt_{i}.json"


def all_layers_path(trait, i, ext):
    return f"{EXP}/{trait}/inference/residual_stream_activations/prompt_{i}.{ext}"


def capture_outputs(trait, indices):
    exts = ["pt", "json"] if config["capture"]["save_json"] else ["pt"]
    return {ext: [all_layers_path(trait, i, ext) for i in indices] for ext in exts}


def dynamics_path(trait, i):
    return f"{EXP}/{trait}/inference/dynamics/prompt_{i}.json"


def dynamics_extra_methods(trait):
    """Dynamics methods the all-layers capture does not hold: they need a model run."""
    return [m for m in DYNAMICS[trait]["methods"] if not m["reuse"]]


def dynamics_reuses_capture(trait):
    return any(m["reuse"] for m in DYNAMICS[trait]["methods"])


def dynamics_captures(shard_id, indices):
    """The all-layers captures a dynamics job reads: (manifest input, file list param)."""
    def done(wildcards):
        return [manifest("capture_all_layers", shard_id, wildcards.trait)] if dynamics_reuses_capture(wildcards.trait) else []

    def files(wildcards):
        return [all_layers_path(wildcards.trait, i, "pt") for i in indices] if dynamics_reuses_capture(wildcards.trait) else []
    return done, files


def dynamics_vectors(wildcards):
    return [m["vector"] for m in dynamics_extra_methods(wildcards.trait)]


def dynamics_model_files(wildcards):
    return PLAN.model_files if dynamics_extra_methods(wildcards.trait) else []


def dynamics_resources():
    """config resources, but no GPU for a job that reads captures only."""
    return {k: (lambda wildcards, v=v, k=k: v if k != "gpu" or dynamics_extra_methods(wildcards.trait) else 0)
            for k, v in config["resources"].items()}


def dynamics_tables_outputs():
    return {f"{name}_{ext}": f"{EXP}/tables/dynamics_{name}.{ext}"
            for name in ("tokens", "summary") for ext in ("csv", "parquet")}


def single_layers():
    """config single_layer.layers, checked against the model."""
    layers = sorted(config["single_layer"]["layers"])
    missing = [l for l in layers if l >= PLAN.n_layers]
    if missing:
        exit_with_error("plan", TraitflowError("config single_layer.layers", f"{missing} do not exist "
                                               f"(the model has layers 0-{PLAN.n_layers - 1})", "pick from those"))
    return layers


SINGLE_LAYERS = single_layers()


def internals_path(i, layer):
    """Trait-independent layer internals, once per (prompt, layer)."""
    return f"{EXP}/inference/layer_internal_states/prompt_{i}_layer{layer}.pt"


def single_layer_path(trait, i, layer, ext):
    return f"{EXP}/{trait}/inference/layer_internal_states/prompt_{i}_layer{layer}.{ext}"


def single_layer_outputs(trait, indices):
    exts = ["pt", "json"] if config["capture"]["save_json"] else ["pt"]
    return {ext: [single_layer_path(trait, i, l, ext) for i in indices for l in SINGLE_LAYERS] for ext in exts}


def trait_targets(trait):
    captures = [p for files in capture_outputs(trait, range(len(PLAN.prompts))).values() for p in files]
    single = [p for files in single_layer_outputs(trait, range(len(PLAN.prompts))).values() for p in files]
    return captures + single + [dynamics_path(trait, i) for i in range(len(PLAN.prompts))]


def extracted_vectors():
    vectors = [
        f"{EXP}/{{trait}}/extraction/vectors/{vector_filename(m, l)}"
        for m in EXTRACTED_METHODS
        for l in range(PLAN.n_layers)
    ]
    return vectors + [metadata_path(v) for v in vectors]


def trait_vector(wildcards):
    return PLAN.traits[wildcards.trait].vector_path


def trait_settings(wildcards):
    t = PLAN.traits[wildcards.trait]
    return {"method": t.method, "layer": t.layer}


def viewer_files():
    """The JSON files the viewer index lists (and depends on): every trait's JSON targets."""
    return [p for trait in TRAITS for p in trait_targets(trait) if p.endswith(".json")]


def report_prompts():
    return list(range(min(len(PLAN.prompts), config["report"]["max_prompts"])))


def report_layer():
    layer = config["report"]["layer"]
    if layer is None:
        return PLAN.n_layers // 2
    if layer >= PLAN.n_layers:
        exit_with_error("plan", TraitflowError("config report.layer", f"layer {layer} does not exist "
                                               f"(the model has layers 0-{PLAN.n_layers - 1})", "pick one of those"))
    return layer


def report_targets():
    if not report_prompts():
        return []
    return [f"{EXP}/report/heatmaps/{trait}" for trait in TRAITS] + [f"{EXP}/report/cross_trait"]


def trait_manifests(traits):
    stages = ["capture_all_layers", "dynamics"] + (["capture_single_layer"] if SINGLE_LAYERS else [])
    return [m for stage in stages for m in manifests(stage, traits)]


def lost_files():
    """Files that a finished job's manifest lists but that are gone from disk.

    The targets are manifests, and Snakemake checks only requested outputs, so a
    deleted per-prompt file is requested here to make its job rerun. A cold run
    has no manifests yet and requests nothing extra.
    """
    lost = []
    planned = trait_manifests(TRAITS) + manifests("generate") + (manifests("capture_layer_internals") if SINGLE_LAYERS else [])
    for path in filter(os.path.exists, planned):
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        # `snakemake --touch` leaves empty manifests: they list nothing to check.
        lost += [f for f in (json.loads(text)["files"] if text else []) if not os.path.exists(f)]
    return lost


def all_targets():
    return (trait_manifests(TRAITS) + lost_files() + [f"{EXP}/viewer/index.json"] + report_targets()
            + list(dynamics_tables_outputs().values()))


def print_summary():
    print_run_summary(PLAN, {t: trait_targets(t) for t in PLAN.traits}, RUN_START, LOGS)

# Config validation, the plan (traits, vectors, prompt shards) and path helpers.
import time

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from traitflow import __version__
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


def dynamics_captures(indices):
    def captures(wildcards):
        if not any(m["reuse"] for m in DYNAMICS[wildcards.trait]["methods"]):
            return []
        return [all_layers_path(wildcards.trait, i, "pt") for i in indices]
    return captures


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
        raise WorkflowError(f"traitflow [plan] error: config single_layer.layers: {missing} do not exist "
                            f"(the model has layers 0-{PLAN.n_layers - 1}); fix: pick from those")
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
        raise WorkflowError(f"traitflow [plan] error: config report.layer: layer {layer} does not exist "
                            f"(the model has layers 0-{PLAN.n_layers - 1}); fix: pick one of those")
    return layer


def report_targets():
    if not report_prompts():
        return []
    return [f"{EXP}/report/heatmaps/{trait}" for trait in TRAITS] + [f"{EXP}/report/cross_trait"]


def all_targets():
    return ([p for trait in TRAITS for p in trait_targets(trait)] + [f"{EXP}/viewer/index.json"] + report_targets()
            + list(dynamics_tables_outputs().values()))


def print_summary():
    print_run_summary(PLAN, {t: trait_targets(t) for t in PLAN.traits}, RUN_START, LOGS)

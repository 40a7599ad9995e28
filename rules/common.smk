# Config validation, the plan (traits, vectors, prompt shards) and path helpers.
import time

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from traitflow import __version__
from traitflow.errors import TraitflowError
from traitflow.summary import print_run_summary
from traitflow.vectors import EXTRACTED_METHODS, metadata_path, vector_filename
from traitflow.workflow import DEMO_MODEL_DIR, make_plan

validate(config, "../schemas/config.schema.yaml", set_default=True)

RUN_START = time.time()
try:
    PLAN = make_plan(config)
except TraitflowError as err:
    raise WorkflowError(f"traitflow [plan] error: {err}") from None

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


def trait_targets(trait):
    return [p for files in capture_outputs(trait, range(len(PLAN.prompts))).values() for p in files]


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


def all_targets():
    return [p for trait in TRAITS for p in trait_targets(trait)]


def print_summary(failed):
    print_run_summary(PLAN, {t: trait_targets(t) for t in TRAITS}, RUN_START, LOGS)

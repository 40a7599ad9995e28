# Config validation, the plan (traits, vectors, prompt shards) and path helpers.
import atexit
import functools
import os
import re
import sys
import time

from snakemake.utils import validate
from snakemake_interface_executor_plugins.settings import ExecMode

from traitflow.plan.dynamics_plan import plan_dynamics
from traitflow.core.errors import TraitflowError, exit_with_error
from traitflow.plan.orphans import orphans_line
from traitflow.outputs.projections_table import partition_path, partition_value
from traitflow.outputs.summary import print_run_summary, rerun_reasons
from traitflow.experiment.examples import UNRECORDED_POSITION, position_folder, positions_of
from traitflow.experiment.vectors import EXTRACTED_METHODS, metadata_path, vector_filename
from traitflow.plan.workflow import DEFAULT_SET, check_config, drop_unusable_dynamics_vectors, make_plan

RUN_START = time.time()
try:  # every problem found before a model loads is one line on screen, no traceback
    check_config(config, f"{workflow.basedir}/schemas/config.schema.yaml",
                 # where a key came from: the last file that sets it wins, so search from the last
                 [*workflow.config_settings.configfiles, *reversed(workflow.configfiles)],
                 workflow.config_settings.config)
    validate(config, "../schemas/config.schema.yaml", set_default=True)  # fills in the defaults
    PLAN = make_plan(config)
    DYNAMICS = plan_dynamics(PLAN, config["dynamics"])  # {trait: {layer, methods}}
    drop_unusable_dynamics_vectors(DYNAMICS, PLAN.hidden_size)
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


def resolve_model_settings():
    """Resolve every `auto` a model job depends on, at plan time and without torch, in config itself.

    capture.device ('cpu', 'cuda' or 'cuda:N'), capture.dtype, resources.gpu,
    resources.mem_mb and generation.chat_template become the concrete values the
    jobs use, written here into config (scripts reading snakemake.config see them too), so params carry
    "bfloat16", never "auto". On a local run with GPUs, the global resource `gpu`
    defaults to GPUs x capture.jobs_per_gpu: model jobs (gpu: 1 each) never share
    a GPU, and each takes a free one at start (traitflow.model.modeling.claim_gpu).
    Called once by the Snakefile, before any rule is defined.
    """
    from traitflow.model.modeling import plan_model_settings, visible_gpus
    from traitflow.plan.workflow import model_dir, planned_chat_template

    model = PLAN.settings.model
    try:  # a model the workflow builds has no folder yet: what its chat template will be is known
        settings = plan_model_settings(PLAN.settings.jobs, model_dir(model), model.name,
                                       demo=bool(planned_chat_template(model)))
    except TraitflowError as err:
        exit_with_error("plan", err)
    config["resources"].update(gpu=settings["gpu"], mem_mb=settings["mem_mb"])
    config["capture"].update(device=settings["device"], dtype=settings["dtype"])
    config["generation"].update(chat_template=settings["chat_template"])
    os.environ.update(TRAITFLOW_JOBS_PER_GPU=str(config["capture"]["jobs_per_gpu"]))  # read by load_model's GPU slots
    if workflow.local_exec and settings["gpu"] > 0 and "gpu" not in workflow.global_resources:
        gpus = visible_gpus()
        if gpus:
            workflow.register_resource("gpu", gpus * config["capture"]["jobs_per_gpu"])
    return settings


def model_params():
    """What every model-loading script gets; all of it triggers reruns.

    dtype and device are concrete ('bfloat16', 'cuda'), so moving a project from
    CPU to GPU reruns what it changes. Batch sizes and the token budget change
    speed, not results: scripts read them from snakemake.config.
    """
    return {
        # functions, not strings: a local model folder (the demo's) is a prefix of the input files, and
        # `snakemake --lint` takes a hardcoded path prefix for a shared-filesystem assumption
        "model": lambda wildcards: config["model"],
        "model_path": lambda wildcards: PLAN.model_path,
        "dtype": config["capture"]["dtype"],
        "device": config["capture"]["device"],
        **MODEL_FINGERPRINT,
    }


def model_resources():
    """Snakemake resources of a job that loads a model: config resources (resolved), with mem_mb
    multiplied by the attempt number, so `--retries N` retries a job killed for memory with more."""
    res = dict(config["resources"])
    mem_mb = res.pop("mem_mb")
    return {**res, "mem_mb": lambda wildcards, attempt: mem_mb * attempt}


def benchmark_path(stage, shard=None, name=None):
    """Where a model job's `benchmark:` file goes (wall time, max RSS, ...: size cluster requests from it)."""
    return f"{LOGS}/benchmarks/{stage}/{name if name is not None else PLAN.shard_names[shard]}.tsv"


def generation_params():
    """The generation settings that change a response; batch_size does not (speed only)."""
    return {k: v for k, v in config["generation"].items() if k != "batch_size"}


def manifest(stage, shard_id, trait="_shared"):
    """A job's manifest (written last, listing its files): what downstream rules depend on.

    Depending on per-prompt files instead makes Snakemake match each path against
    every output pattern under experiments/{exp}/: ~20 s of planning at 10 traits
    x 200 prompts. "_shared" cannot clash with a trait (names start alphanumeric).
    """
    return f"{MANIFESTS}/{trait}/{stage}_{PLAN.shard_names[shard_id]}.json"


def shard_rule(stage, shard_id):
    """A per-shard rule's name: capture_shard3, or capture_harmful_shard0 for prompt set 'harmful'.

    Shards are numbered within their prompt set, so a set's names (and manifests,
    benchmark files) never change when another set grows.
    """
    return f"{stage}_{PLAN.shard_names[shard_id]}"


def shard_log(stage, shard_id):
    return f"{LOGS}/{stage}/{PLAN.shard_names[shard_id]}.log"


def local_indices(indices):
    """Plan-wide prompt ids -> [index within its set]: what params carry (stable when other sets change)."""
    return [PLAN.prompt_index(g) for g in indices]


def manifests(stage, traits=None):
    owners = traits if traits is not None else ["_shared"]
    return [manifest(stage, k, t) for t in owners for k in range(len(PLAN.shards))]


def shards_of(indices):
    return sorted({k for k, shard in enumerate(PLAN.shards) if set(shard) & set(indices)})


def prompt_file(g):
    """prompt_{i} for plan-wide prompt g of the default set; {set}/prompt_{i} for a named set, whose
    files get their own folder level (the default set keeps the seed's paths). A string g is a
    pattern placeholder such as "{prompt}" (default-set layout)."""
    if isinstance(g, str):
        return f"prompt_{g}"
    name, i = PLAN.prompt_set(g), PLAN.prompt_index(g)
    return f"prompt_{i}" if name == DEFAULT_SET else f"{name}/prompt_{i}"


def response_path(g):
    return f"{EXP}/inference/responses/{prompt_file(g)}.json"


def all_layers_path(trait, g, ext):
    return f"{EXP}/{trait}/inference/residual_stream_activations/{prompt_file(g)}.{ext}"


def shared_path(g):
    """Trait-independent data of prompt g: attention, residual norms, logit lens (docs/formats.md)."""
    return f"{EXP}/inference/shared/{prompt_file(g)}.safetensors"


def capture_outputs(indices, traits=None):
    """A capture job's files: the shared file per prompt, then every trait's files (trait-major)."""
    traits = CAPTURE_TRAITS if traits is None else traits
    exts = ["pt", "json"] if config["capture"]["save_json"] else ["pt"]
    return {"shared": [shared_path(i) for i in indices],
            **{ext: [all_layers_path(t, i, ext) for t in traits for i in indices] for ext in exts}}


@functools.cache
def capture_traits():
    """What the capture pass projects, per trait: its own vector and the other dynamics methods' vectors,
    with the content hash of each vector the user brought (a replaced vector reruns, whatever its date).

    The dynamics stage then reads every score it needs from the captures and loads no model.
    """
    traits = []
    for t in CAPTURE_TRAITS:
        plan, vectors = trait_plan(t), {m["method"]: m["vector"] for m in dynamics_extra_methods(t)}
        traits.append({"name": t, "method": plan.method, "layer": plan.layer, "vector": plan.vector_path,
                       "method_vectors": vectors, "sha256": user_fingerprints([plan.vector_path, *vectors.values()])})
    return traits


def capture_vectors():
    return sorted({v for t in capture_traits() for v in [t["vector"], *t["method_vectors"].values()]})


def capture_dynamics_params():
    """Where extra dynamics methods are scored (part of the capture only when some trait has one)."""
    if not any(dynamics_extra_methods(t) for t in CAPTURE_TRAITS):
        return {}
    return {"layers": {t: DYNAMICS[t]["layer"] for t in CAPTURE_TRAITS}, "point": config["dynamics"]["point"]}


def dynamics_path(trait, g):
    return f"{EXP}/{trait}/inference/dynamics/{prompt_file(g)}.json"


def dynamics_extra_methods(trait):
    """Dynamics methods other than the trait's own: the capture pass scores their vectors too."""
    return [m for m in DYNAMICS[trait]["methods"] if not m["reuse"]]


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


def internals_path(g, layer):
    """Trait-independent layer internals, once per (prompt, layer)."""
    return f"{EXP}/inference/layer_internal_states/{prompt_file(g)}_layer{layer}.pt"


def single_layer_path(trait, g, layer, ext):
    return f"{EXP}/{trait}/inference/layer_internal_states/{prompt_file(g)}_layer{layer}.{ext}"


def single_layer_outputs(traits, indices):
    """{ext: per-trait single-layer files} of one trait (a name) or several (a list).

    Order: trait, then prompt, then layer (scripts/capture_single_layer.py relies on it).
    """
    traits = [traits] if isinstance(traits, str) else traits
    exts = ["pt", "json"] if config["capture"]["save_json"] else ["pt"]
    return {ext: [single_layer_path(t, i, l, ext) for t in traits for i in indices for l in SINGLE_LAYERS]
            for ext in exts}


def trait_targets(trait):
    captures = [p for ext, files in capture_outputs(range(len(PLAN.prompts)), [trait]).items() if ext != "shared"
                for p in files]
    single = [p for files in single_layer_outputs(trait, range(len(PLAN.prompts))).values() for p in files]
    return captures + single + [dynamics_path(trait, i) for i in range(len(PLAN.prompts))]


def extracted_vectors():
    """Every extracted vector: each vector.position in its own folder (none for the default, all)."""
    vectors = [
        os.path.join(f"{EXP}/{{trait}}/extraction/vectors", position_folder(p), vector_filename(m, l))
        for p in positions_of(config["vector"]["position"])
        for m in EXTRACTED_METHODS
        for l in range(PLAN.n_layers)
    ]
    # The extraction's own .gitignore lists these files: generated, unlike the vectors a user brings.
    return vectors + [metadata_path(v) for v in vectors] + [f"{EXP}/{{trait}}/extraction/vectors/.gitignore"]


def trait_vector(wildcards):
    return PLAN.traits[wildcards.trait].vector_path


def scoring_position(trait):
    """Where a trait's prompts are scored besides the response mean: its vector's position (a brought
    vector that records none: its response tokens)."""
    return PLAN.traits[trait].position or UNRECORDED_POSITION


def trait_settings(wildcards):
    t = PLAN.traits[wildcards.trait]
    return {"method": t.method, "layer": t.layer}


def viewer_files():
    """The files the viewer index lists (and depends on): every trait's JSON targets and the shared files."""
    return [p for trait in TRAITS for p in trait_targets(trait) if p.endswith(".json")] + [
        shared_path(i) for i in range(len(PLAN.prompts))]


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


REPORT_TABLES = {name: f"{EXP}/report/tables/{name}.html" for name in ("vector_quality", "dynamics_summary")}


def report_targets():
    """The report's tables, and its figure folders when report.max_prompts asks for figures."""
    figures = [f"{EXP}/report/heatmaps/{trait}" for trait in TRAITS] + [f"{EXP}/report/cross_trait"]
    return (figures if report_prompts() else []) + list(REPORT_TABLES.values())


def stage_manifests():
    """The manifests of every per-shard job after generation (each job serves every trait)."""
    stages = ["capture", "dynamics"] + (["capture_layer_internals", "capture_single_layer"] if SINGLE_LAYERS else [])
    return [m for stage in stages for m in manifests(stage)]


# ---- the projections table (rules/projections_table.smk) -----------------------------------

PROJECTIONS_DIR = f"{EXP}/tables/projections"
TRAIT_OF_PART = {partition_value(t): t for t in TRAITS}


def projections_table_path(trait):
    return partition_path(PROJECTIONS_DIR, trait)


def projections_tables():
    """Every trait's part (for all_targets)."""
    return [projections_table_path(t) for t in TRAITS]


def projections_table_vector_stamp(trait):
    return f"{MANIFESTS}/{trait}/projections_table_vector.txt"


def projections_table_captures(wildcards):
    """The capture manifests: ancient while the part exists, plain when it is missing. A new trait
    changes every capture job's params, so its capture runs even when only the table is asked for."""
    done = [manifest("capture", k) for k in range(len(PLAN.shards))]
    return ancient(done) if os.path.exists(projections_table_path(TRAIT_OF_PART[wildcards.part])) else done


def all_targets():
    FINGERPRINTS.save()  # called last (by the target rule all), once the plan has hashed what it needed
    return (stage_manifests() + DECLARED.requests + [f"{EXP}/viewer/index.json"] + report_targets()
            + list(dynamics_tables_outputs().values()) + projections_tables()
            + variant_targets()  # rules/variants.smk ([] without `variants:`)
            + STEERING_TARGETS)  # rules/steering.smk ([] unless steering.enabled)


SUMMARY_PRINTED = []


def print_summary(workflow):
    """The end-of-run summary (onsuccess, onerror), with why each stage's jobs ran."""
    SUMMARY_PRINTED.append(True)
    print_run_summary(PLAN, {t: trait_targets(t) for t in PLAN.traits}, RUN_START, LOGS,
                      rerun_reasons(workflow, PLAN.shard_names), orphans_line(PLAN.settings.inputs, PLAN.exp_dir))


def print_summary_after_noop():
    """Snakemake calls no hook when nothing is to be done; the summary (and its left-out traits) still prints.

    Only for a plain run in the main process: not a dry run, a job's own process,
    or --lint / --report / --unlock and friends, which build no schedule.
    """
    dag = workflow.dag
    plain = not any(a.startswith(("--lint", "--report", "--unlock", "--delete", "--touch", "--list", "--summary",
                                  "--detailed-summary", "--dag", "--rulegraph", "--cleanup"))
                    for a in sys.argv[1:])
    main = workflow.exec_mode == ExecMode.DEFAULT
    if not SUMMARY_PRINTED and main and dag is not None and not workflow.dryrun and plain and not list(dag.needrun_jobs()):
        print_summary(workflow)


atexit.register(print_summary_after_noop)


include: "staleness.smk"  # content fingerprints, what per-shard jobs declare, the traits they serve

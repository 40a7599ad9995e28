# Model variants' plan (included by rules/variants.smk): the variants, their jobs' names, manifests,
# params and paths. No rules here; traitflow/variants/plan.py checks the config and lays out the folders.
from traitflow.model.modeling import plan_chat_template
from traitflow.plan.declared import Declared
from traitflow.plan.workflow import DEMO_MODEL
from traitflow.variants.plan import pairs, plan_variants, root, variant_model_dir

try:
    VARIANTS = plan_variants(PLAN.settings, PLAN)
    for v in VARIANTS[1:]:  # every variant formats prompts as the vector variant does (replays need one format)
        plan_chat_template(config["generation"]["chat_template"], variant_model_dir(PLAN.settings.model, v), v.model,
                           demo=v.model == DEMO_MODEL)
except TraitflowError as err:
    exit_with_error("plan", err)

VARIANT = {v.name: v for v in VARIANTS}
REF = VARIANTS[0].name if VARIANTS else None
VARIANT_PAIRS = [(v, s) for v, s in pairs(VARIANTS) if (v, s) != (REF, REF)]  # (REF, REF): the ordinary jobs
VARIANT_TABLES = {f"{name}_{ext}": f"{EXP}/variants/tables/{name}.{ext}"
                  for name in ("scores", "differences", "finetuning_shift") for ext in ("csv", "parquet")}
VARIANT_FIGURE = f"{EXP}/variants/report/finetuning_shift.png"


def variant_rule(stage, variant, source, shard_id):
    """variants_generate_helpful_shard0, variants_capture_helpful_from_chat_shard0."""
    pair = variant if source is None else f"{variant}_from_{source}"
    return f"variants_{stage}_{pair}_{PLAN.shard_names[shard_id]}"


def variant_manifest(name):
    return f"{MANIFESTS}/_variants/{name}.json"  # the basename is the rule's name, as for the ordinary shard jobs


def rebase(path, variant, source):
    """An ordinary experiment path moved to the folder of one (variant, response source)."""
    return root(EXP, VARIANTS, variant, source) + path[len(EXP):]


def generate_manifest(source, shard_id):
    """The manifest of the job writing a variant's own responses (the ordinary job's for the vector variant)."""
    if source == REF:
        return manifest("generate", shard_id)
    return variant_manifest(variant_rule("generate", source, None, shard_id))


def capture_manifest(variant, source, shard_id):
    """The manifest of one pair's capture job (the ordinary job's for the vector variant's own responses)."""
    if (variant, source) == (REF, REF):
        return manifest("capture", shard_id)
    return variant_manifest(variant_rule("capture", variant, source, shard_id))


def variant_model_params(v):
    """model_params() for one variant: its model, where it loads from, and its files' fingerprint."""
    folder = variant_model_dir(PLAN.settings.model, v)
    return {"model": lambda wildcards, m=v.model: m, "model_path": lambda wildcards, p=v.model_path: p,
            "dtype": config["capture"]["dtype"], "device": config["capture"]["device"],
            **({} if v.model == DEMO_MODEL else {"model_sha256": FINGERPRINTS.folder(folder)})}


def variant_traits(v):
    """capture_traits() with the vectors this variant brings in place of the shared ones."""
    traits = []
    for t in capture_traits():
        if t["name"] in v.vectors:
            path = v.vectors[t["name"]]
            t = {**t, "vector": path, "method_vectors": {}, "sha256": user_fingerprints([path])}
        traits.append(t)
    return traits


def pair_captures(variant, source):
    """{trait: [per-prompt .pt]} of one pair, in plan order."""
    return {t: [rebase(all_layers_path(t, g, "pt"), variant, source) for g in range(len(PLAN.prompts))]
            for t in TRAITS}


VARIANT_MANIFESTS = [variant_manifest(variant_rule("generate", v.name, None, k))
                     for v in VARIANTS[1:] for k in range(len(PLAN.shards))] + [
                        variant_manifest(variant_rule("capture", v, s, k))
                        for v, s in VARIANT_PAIRS for k in range(len(PLAN.shards))]
VARIANT_DECLARED = Declared(VARIANT_MANIFESTS, named_paths(sys.argv[1:]), check_sizes=config["check_output_sizes"],
                            warn=MAIN_PROCESS, only=None if MAIN_PROCESS else target_jobs(sys.argv[1:]),
                            remove_damaged=MAIN_PROCESS and plain_run(sys.argv[1:]))


def variant_outputs(name, files):
    return VARIANT_DECLARED.outputs(variant_manifest(name), files, f"{LOGS}/repairs")


def viewer_pairs():
    """What the viewer's variant picker lists per pair: folders relative to the experiment ("" for its own)."""
    def folder(path):
        return "" if path == EXP else os.path.join(os.path.relpath(path, EXP), "")

    return [{"variant": v, "responses_from": s, "model": VARIANT[v].model, "root": folder(root(EXP, VARIANTS, v, s)),
             "source_root": folder(root(EXP, VARIANTS, s, s)), "files": pair_captures(v, s)}
            for v, s in pairs(VARIANTS)]


def variant_targets():
    """What `all` asks of the variants: their manifests, lost files, tables and figure ([] without variants)."""
    if not VARIANTS:
        return []
    return VARIANT_MANIFESTS + VARIANT_DECLARED.requests + list(VARIANT_TABLES.values()) + [
        VARIANT_FIGURE, f"{EXP}/variants/viewer.json"]

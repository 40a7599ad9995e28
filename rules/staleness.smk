# Staleness, by content and by damage, and the traits the per-shard jobs serve (included by common.smk).
#
# - Content fingerprints: what a job reads from the user reaches it with its sha256 in params
#   (traitflow/plan/fingerprints.py), so a file replaced by an older-dated one still reruns its jobs.
# - Declared outputs: a per-shard job declares its manifest, plus only those of its files that this
#   plan needs: named on the command line, lost, or resized (traitflow/plan/declared.py).
# - Kept traits: the per-shard jobs serve the chosen traits plus those they already cover, so choosing
#   a subset of traits never recaptures (traitflow/plan/capture_set.py).
from traitflow.plan.capture_set import kept_dynamics, kept_traits
from traitflow.plan.declared import Declared, named_paths, plain_run, target_jobs
from traitflow.plan.fingerprints import Fingerprints

# What a per-shard job declares: its manifest first, then only the files this plan needs (named on the
# command line, lost, or resized since its manifest recorded them); traitflow/plan/declared.py says why.
# A job started in its own process (a cluster job) re-plans: it checks only its own files, as the main
# process did, so both declare the same outputs.
MAIN_PROCESS = workflow.exec_mode == ExecMode.DEFAULT
DECLARED = Declared(stage_manifests() + manifests("generate"), named_paths(sys.argv[1:]),
                    check_sizes=config["check_output_sizes"], warn=MAIN_PROCESS,
                    only=None if MAIN_PROCESS else target_jobs(sys.argv[1:]),
                    remove_damaged=MAIN_PROCESS and plain_run(sys.argv[1:]))


def declared_outputs(stage, shard_id, files):
    """output: of a per-shard job writing files ({name: [paths]}, also its params.outputs)."""
    return DECLARED.outputs(manifest(stage, shard_id), files, f"{LOGS}/repairs")


def kept():
    """{name: TraitPlan} of traits the capture manifests cover that config did not choose (still usable)."""
    found = kept_traits(PLAN, DECLARED.traits(manifests("capture")))
    dynamics = kept_dynamics(PLAN, found, config["dynamics"])
    if dynamics is None:
        return {}
    drop_unusable_dynamics_vectors(dynamics, PLAN.hidden_size)
    DYNAMICS.update(dynamics)
    return found


KEPT = kept()
CAPTURE_TRAITS = TRAITS + list(KEPT)  # what capture, dynamics and single-layer shard jobs serve
EXTRACT_TRAITS += [n for n, t in KEPT.items() if t.extract]


def trait_plan(name):
    return PLAN.traits[name] if name in PLAN.traits else KEPT[name]


FINGERPRINTS = Fingerprints()  # cached sha256 of user files (traitflow/plan/fingerprints.py); saved by all_targets()


def extracted_paths():
    """Vector files our extraction writes: outputs, which Snakemake tracks by date (never fingerprinted)."""
    return {p.format(trait=t) for t in EXTRACT_TRAITS for p in extracted_vectors()}


def extraction_manifest(trait):
    return f"{MANIFESTS}/{trait}/extract_vectors.json"


def extraction_records():
    """{vector path: sha256 the extraction wrote} from the extraction manifests that exist."""
    from traitflow.core.manifests import read_manifest

    records = {}
    for t in EXTRACT_TRAITS:
        try:
            found = read_manifest(extraction_manifest(t))
        except (OSError, TraitflowError):
            continue
        records.update({r.path: r.sha256 for r in (found.files if found else [])})
    return records


def user_fingerprints(paths):
    """{path: sha256 or None} for params: a file's content, so a replaced file reruns the jobs reading it even
    when it is older than their outputs (cp -p, git checkout, an unpacked archive). A vector our extraction
    wrote is None (Snakemake tracks it by date) until its content differs from what the extraction wrote."""
    keys = {}
    for p in paths:
        if p not in EXTRACTED_PATHS:
            keys[p] = FINGERPRINTS(p)
        elif p in EXTRACTION_RECORDS:
            current = FINGERPRINTS(p)
            keys[p] = None if current in (None, EXTRACTION_RECORDS[p]) else current
        else:
            keys[p] = None
    return keys


def model_fingerprint():
    """One hash over a user model folder's files ({} for a model the workflow builds: the demo model, and a
    GGUF file's conversion, whose folder is named by the file's sha256)."""
    from traitflow.plan.workflow import DEMO_MODEL, is_gguf, model_dir

    if config["model"] == DEMO_MODEL or is_gguf(config["model"]):
        return {}
    return {"model_sha256": FINGERPRINTS.folder(model_dir(PLAN.settings.model))}


EXTRACTED_PATHS = extracted_paths()
EXTRACTION_RECORDS = extraction_records()
MODEL_FINGERPRINT = model_fingerprint()

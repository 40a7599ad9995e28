"""Parse-time planning for the Snakefile: traits, vectors, prompt shards and model facts.

The Snakefile imports this on every invocation (and every cluster job re-parses
it), so it must stay cheap: no torch, no transformers, only small files read.
"""

import glob
import json
import os
import re
import sys
from dataclasses import dataclass, field

from .errors import TraitflowError
from .prompts import check_prompts, read_prompts
from .vectors import EXTRACTED_METHODS, choose_vector, list_vectors, vector_filename

DEMO_MODEL = "traitflow-demo"
DEMO_MODEL_DIR = "resources/models/traitflow-demo"
TRAIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
# Folders of an experiment that hold shared outputs, never traits.
NOT_TRAITS = {"inference", "viewer", "tables", "report"}


@dataclass
class TraitPlan:
    name: str
    extract: bool = False  # vectors come from our extraction rule
    method: str | None = None
    layer: int | None = None
    vector_path: str | None = None
    error: str | None = None  # why this trait cannot run (it is then left out)


@dataclass
class Plan:
    experiment: str
    exp_dir: str
    model: str  # what the user named (recorded in metadata)
    model_path: str  # what from_pretrained loads
    model_files: list  # inputs that must exist before a model loads
    n_layers: int
    prompts: list
    shards: list  # [[prompt index, ...], ...]
    traits: dict = field(default_factory=dict)  # name -> TraitPlan

    @property
    def ok_traits(self):
        return [t for t in self.traits.values() if t.error is None]


def model_path(config):
    return DEMO_MODEL_DIR if config["model"] == DEMO_MODEL else config["model"]


def _hub_config(name):
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")
    hits = sorted(glob.glob(os.path.join(hub, "models--" + name.replace("/", "--"), "snapshots", "*", "config.json")))
    return hits[-1] if hits else None


def model_config(config):
    """The model's config.json as a dict, read without importing transformers."""
    from .demo import DEFAULT_SPEC

    name = config["model"]
    if name == DEMO_MODEL:
        return {**DEFAULT_SPEC, **config.get("demo_model", {})}
    path = os.path.join(name, "config.json") if os.path.isdir(name) else _hub_config(name)
    if not path or not os.path.exists(path):
        raise TraitflowError(
            f"model '{name}'", "not a local directory and not in the local Hugging Face cache",
            f"fetch it once where the hub is reachable (`hf download {name}`), "
            "copy the cache (HF_HOME) here, or set model to a local path")
    with open(path, encoding="utf-8") as fh:
        cfg = json.load(fh)
    return cfg.get("text_config", cfg)


def _model_files(config):
    if config["model"] == DEMO_MODEL:
        return [os.path.join(DEMO_MODEL_DIR, "config.json")]
    if os.path.isdir(config["model"]):
        return [os.path.join(config["model"], "config.json")]
    return []


def shard(indices, per_job):
    return [indices[k:k + per_job] for k in range(0, len(indices), per_job)]


def load_prompt_list(config, exp_dir):
    if config.get("prompts"):
        return check_prompts(config["prompts"], "config prompts")
    path = config.get("prompts_file") or os.path.join(exp_dir, "inference_prompts.txt")
    return read_prompts(path)


def discover_traits(exp_dir):
    if not os.path.isdir(exp_dir):
        raise TraitflowError(exp_dir, "experiment folder not found", "create it, or set experiment to one that exists")
    return sorted(d for d in os.listdir(exp_dir)
                  if d not in NOT_TRAITS and os.path.isdir(os.path.join(exp_dir, d, "extraction")))


def plan_trait(exp_dir, name, vector_cfg, n_layers):
    trait = TraitPlan(name=name)
    extraction = os.path.join(exp_dir, name, "extraction")
    vectors_dir = os.path.join(extraction, "vectors")
    trait.layer = n_layers // 2 if vector_cfg.get("layer") is None else vector_cfg["layer"]
    method = vector_cfg.get("method", "auto")
    if not os.path.isdir(os.path.join(exp_dir, name)):
        trait.error = f"{os.path.join(exp_dir, name)}: trait folder not found; fix: create it or remove the trait from traits"
        return trait
    if not 0 <= trait.layer < n_layers:
        trait.error = (f"config vector.layer: layer {trait.layer} does not exist (the model has layers 0-{n_layers - 1}); "
                       "fix: pick one of those")
        return trait
    trait.extract = all(os.path.exists(os.path.join(extraction, f)) for f in ("positive.txt", "negative.txt"))
    if trait.extract and (method == "auto" or method in EXTRACTED_METHODS):
        trait.method = "probe" if method == "auto" else method
        trait.vector_path = os.path.join(vectors_dir, vector_filename(trait.method, trait.layer))
        return trait
    available = list_vectors(vectors_dir)
    if not available and not trait.extract:
        trait.error = (f"{extraction}: no vectors and no extraction examples; fix: add positive.txt and negative.txt "
                       f"(one example per line) or vectors/{{method}}_layer{{L}}.pt")
        return trait
    try:
        trait.method, trait.vector_path = choose_vector(available, method, trait.layer, vectors_dir)
    except TraitflowError as err:
        trait.error = str(err)
    return trait


def make_plan(config):
    exp = config["experiment"]
    exp_dir = os.path.join("experiments", exp)
    n_layers = int(model_config(config)["num_hidden_layers"])
    prompts = load_prompt_list(config, exp_dir)
    names = discover_traits(exp_dir) if config["traits"] == "all" else list(config["traits"])
    if not names:
        raise TraitflowError(exp_dir, "no traits found (a trait is a folder holding extraction/)",
                             "add experiments/{exp}/{trait}/extraction/ with examples or vectors")
    for name in names:
        if not TRAIT_NAME.match(name):
            raise TraitflowError(f"trait '{name}'", "name would break file paths or wildcards",
                                 "use letters, digits, '_' and '-' only, starting with a letter or digit")
    plan = Plan(experiment=exp, exp_dir=exp_dir, model=config["model"], model_path=model_path(config),
                model_files=_model_files(config), n_layers=n_layers, prompts=prompts,
                shards=shard(list(range(len(prompts))), config["capture"]["prompts_per_job"]))
    for name in names:
        plan.traits[name] = plan_trait(exp_dir, name, config["vector"], n_layers)
    if not plan.ok_traits:
        raise TraitflowError(exp_dir, "no trait can run: " + " | ".join(t.error for t in plan.traits.values()),
                             "fix the trait folders listed")
    for t in plan.traits.values():
        if t.error:
            print(f"traitflow [plan] error: trait '{t.name}' left out: {t.error}", file=sys.stderr)
    return plan

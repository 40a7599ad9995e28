"""Model facts read at plan time, without importing torch or transformers: where a model's files are
(a local folder, the demo model built per spec, or the local Hugging Face cache) and its config.json.

Below the plan (traitflow.plan.workflow) and the capture code (traitflow.model.capture), which both ask it.
"""

import glob
import json
import os
from types import SimpleNamespace

from .arch import architecture_for
from ..core.errors import TraitflowError

DEMO_MODEL = "traitflow-demo"  # the random model, built per demo_model spec (traitflow.demo.spec.demo_model_dir)


def model_path(config):
    from ..demo.spec import demo_model_dir

    return demo_model_dir(config.get("demo_model")) if config["model"] == DEMO_MODEL else config["model"]


def _hub_dir():
    return os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")


def _hub_config(name):
    hits = sorted(glob.glob(os.path.join(_hub_dir(), "models--" + name.replace("/", "--"), "snapshots", "*",
                                         "config.json")), key=os.path.getmtime)
    return hits[-1] if hits else None


def _looks_like_path(name):
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def model_dir(config):
    """The folder holding the model's files, or None when there is none (yet)."""
    name = config["model"]
    if name == DEMO_MODEL:
        return model_path(config) if os.path.isdir(model_path(config)) else None
    if os.path.isdir(name):
        return name
    hit = _hub_config(name)
    return os.path.dirname(hit) if hit else None


def model_config(config):
    """The model's config.json as a dict, read without importing transformers."""
    from ..demo.spec import DEFAULT_SPEC

    name = config["model"]
    if name == DEMO_MODEL:
        return {"model_type": "gemma2", **DEFAULT_SPEC, **config.get("demo_model", {})}
    where = f"config model '{name}'"
    if os.path.isdir(name):
        from ..demo.files import check_build_record

        check_build_record(name, thorough=False)  # a folder built here (models/traitflow-demo-chat): complete?
        path = os.path.join(name, "config.json")
        if not os.path.exists(path):
            raise TraitflowError(where, "the folder has no config.json",
                                 "point model at a folder written by save_pretrained (config.json, weights, tokenizer)")
    elif _looks_like_path(name):
        raise TraitflowError(where, "folder not found",
                             "fix the path, or give a Hugging Face name from the local cache")
    else:
        path = _hub_config(name)
        if path is None:
            raise TraitflowError(
                where, f"not a local folder and not in the local Hugging Face cache ({_hub_dir()}); "
                "nothing is downloaded at run time",
                f"fetch it once where the hub is reachable (`hf download {name}`) and copy the cache "
                "(HF_HOME) here, or set model to a local folder")
    try:
        with open(path, encoding="utf-8") as fh:
            cfg = json.load(fh)
    except ValueError as err:
        raise TraitflowError(path, f"not valid JSON ({err})", "re-download or re-save the model") from None
    cfg = cfg.get("text_config", cfg)
    architecture_for(SimpleNamespace(model_type=cfg.get("model_type")), where=f"{where} ({path})")
    for key in ("num_hidden_layers", "hidden_size"):
        if not isinstance(cfg.get(key), int):
            raise TraitflowError(path, f"no integer '{key}'", "use a decoder-only causal LM config")
    return cfg


def _model_files(config):
    if config["model"] == DEMO_MODEL:
        return [os.path.join(model_path(config), "config.json")]
    if os.path.isdir(config["model"]):
        return [os.path.join(config["model"], "config.json")]
    return []

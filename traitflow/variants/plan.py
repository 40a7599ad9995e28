"""Parse-time planning of model variants (config `variants:`): checks, each variant's model facts, and paths.

One experiment, several named models. Vectors come from one variant (vector.variant, default the first):
that variant is the experiment's model, so extraction and every ordinary stage run on it, at the
experiment's ordinary paths. Every other (variant, response source) pair gets a folder of its own
(docs/formats.md "Model variants"):

    experiments/{exp}/variants/{v}/inference/responses/...        v's own responses (v not the vector variant)
    experiments/{exp}/variants/{v}/{trait}/inference/...           v reading its own responses
    experiments/{exp}/variants/{v}/responses_from/{s}/...          v reading s's responses, teacher-forced

An experiment without `variants:` plans nothing here, so its paths and files stay as they were.
No torch: the Snakefile imports this on every invocation.
"""

import os
from dataclasses import dataclass, field, replace

from ..core.errors import TraitflowError
from ..model.gguf import is_gguf
from ..model.model_facts import _model_files, model_config, model_dir, model_path

VARIANTS_DIR = "variants"
FIX_NAMES = "give each variant its own name"


@dataclass
class Variant:
    name: str
    model: str  # what the user named
    model_path: str  # what from_pretrained loads
    model_files: list
    hidden_size: int
    vocab_size: int | None
    replay: list  # names of the variants whose responses it reads (teacher-forced)
    vectors: dict = field(default_factory=dict)  # trait -> a vector this variant brings (else the shared one)


def vector_variant_name(raw, variant):
    """config vector.variant, else the first of the variants raw lists."""
    names = [v.get("name") for v in raw if isinstance(v, dict)]
    return variant or (names[0] if names else None)


def use_vector_variant_model(config):
    """With `variants:`, the experiment's model is the vector variant's (set in config before the plan).

    Tolerant of a malformed config: the schema check and plan_variants report problems afterwards.
    """
    raw = config.get("variants") or []
    name = vector_variant_name(raw, (config.get("vector") or {}).get("variant"))
    for v in raw:
        if isinstance(v, dict) and v.get("name") == name and isinstance(v.get("model"), str):
            config["model"] = v["model"]


def _variant_model(model, name):
    """The experiment's ModelSettings (traitflow.core.settings) for the variant's model name."""
    return replace(model, name=name)


def plan_variants(settings, plan):
    """[Variant] in config order, the vector variant first; [] without `variants:`. Raises TraitflowError."""
    raw = settings.variants
    if not raw:
        return []
    names = [v["name"] for v in raw]
    for i, name in enumerate(names):
        if name in names[:i]:
            j = names.index(name)
            raise TraitflowError("config variants", f"variants {j + 1} ({raw[j]['model']}) and {i + 1} "
                                 f"({raw[i]['model']}) are both named '{name}'", FIX_NAMES)
    ref = vector_variant_name(raw, settings.vector.variant)
    if ref not in names:
        raise TraitflowError("config vector.variant", f"'{ref}' is not a variant (variants: {', '.join(names)})",
                             "name one of them, or leave vector.variant out for the first")
    variants = []
    for v in raw:
        replay = v.get("replay", False)
        replay = [n for n in names if n != v["name"]] if replay is True else list(replay or [])
        for other in replay:
            if other not in names:
                raise TraitflowError(f"config variants: '{v['name']}' replay",
                                     f"names '{other}', which is not a variant (variants: {', '.join(names)})",
                                     f"name one of {', '.join(n for n in names if n != v['name'])}, or write "
                                     "replay: true for every other variant")
        model = _variant_model(settings.model, v["model"])
        try:
            facts = model_config(model)
        except TraitflowError as err:
            raise TraitflowError(f"config variants: '{v['name']}'", str(err), "fix the variant's model") from None
        variants.append(Variant(name=v["name"], model=v["model"], model_path=model_path(model),
                                model_files=_model_files(model), hidden_size=int(facts["hidden_size"]),
                                vocab_size=facts.get("vocab_size"), replay=[n for n in replay if n != v["name"]],
                                vectors=dict(v.get("vectors") or {})))
    by_name = {v.name: v for v in variants}
    for v in variants:
        if v.name != ref and is_gguf(v.model) and model_dir(_variant_model(settings.model, v.model)) is None:
            raise TraitflowError(f"config variants: '{v.name}'", f"{v.model} is a GGUF file, which the workflow "
                                 "converts only as the experiment's model (the vector variant), and it is not "
                                 "converted yet", f"convert it once: snakemake --cores 1 {v.model_files[0]} "
                                 f"--config model={v.model}")
    _check_vectors(variants, by_name[ref], plan)
    _check_replays(variants, by_name)
    return [by_name[ref]] + [v for v in variants if v.name != ref]


def _check_vectors(variants, ref, plan):
    from ..experiment.vectors import vector_problems

    for v in variants:
        for trait in v.vectors:
            if trait not in plan.traits:
                raise TraitflowError(f"config variants: '{v.name}' vectors", f"no trait '{trait}' in the experiment "
                                     f"(traits: {', '.join(plan.traits)})", "name one of those traits")
        bad = vector_problems(list(v.vectors.values()), v.hidden_size)
        if bad:
            path, problem = next(iter(bad.items()))
            raise TraitflowError(f"config variants: '{v.name}' vectors", f"{path}: {problem}",
                                 "bring a vector of the variant's own hidden size")
        if v.hidden_size == ref.hidden_size:
            continue
        shared = [t for t in plan.ok_traits if t.name not in v.vectors]
        if shared:
            raise TraitflowError(f"config variants: '{v.name}'", f"hidden size {v.hidden_size} ({v.model}) does not "
                                 f"match the shared vector of trait '{shared[0].name}' ({shared[0].vector_path}, "
                                 f"size {ref.hidden_size}, from variant '{ref.name}', {ref.model})",
                                 f"give variant '{v.name}' its own vectors (variants: vectors: "
                                 f"{{{shared[0].name}: PATH}}) or compare models of one width")


def _check_replays(variants, by_name):
    for v in variants:
        for other in v.replay:
            o = by_name[other]
            if o.vocab_size != v.vocab_size:
                raise TraitflowError(f"config variants: '{v.name}' replay", f"reads the responses of '{other}', "
                                     f"whose vocabulary ({o.vocab_size} tokens, {o.model}) is not its own "
                                     f"({v.vocab_size}, {v.model}); token ids would mean other words",
                                     f"replay only between variants sharing a tokenizer (drop '{other}' from "
                                     f"'{v.name}' replay)")


def variant_model_dir(model, variant):
    """The folder of the variant's model files (model: the experiment's ModelSettings), or None (yet)."""
    return model_dir(_variant_model(model, variant.model))


def pairs(variants):
    """Every (variant, response source) pair that is captured, the vector variant's own first."""
    return [(v.name, s) for v in variants for s in [v.name, *v.replay]]


def root(exp_dir, variants, variant, source):
    """The experiment-like folder of one (variant, response source): the experiment itself for the vector
    variant's own responses, variants/{v} for another variant's own, variants/{v}/responses_from/{s} for replays."""
    if variant == source:
        return exp_dir if variant == variants[0].name else os.path.join(exp_dir, VARIANTS_DIR, variant)
    return os.path.join(exp_dir, VARIANTS_DIR, variant, "responses_from", source)

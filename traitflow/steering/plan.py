"""The steering plan, made at parse time (no torch): which traits, vectors, layers, prompts and settings
each steering job gets, and every bad setting as one line naming it and the fix.

Prompts come from a labelled prompt set of the experiment (steering.prompt_set) or from a labelled
file of their own (steering.prompts_file, read only by steering): `add` steers the trait's contrast
prompts (label false) towards the behaviour, `subtract` steers its target prompts (label true) away.
"""

import os
import sys

from .behaviour import classifiers
from ..core.errors import TraitflowError
from ..experiment.prompts import read_prompt_records
from ..experiment.vectors import vector_filename

DIRECTION_LABEL = {"add": False, "subtract": True, "ablate": True}  # the label of the prompts each direction steers


def steering_prompts(s, plan):
    """[{"key", "id", "text", "labels"}] of the labelled prompts steering reads, and where they come from."""
    if s.prompts_file:
        path = s.prompts_file
        if not os.path.isfile(path):
            raise TraitflowError("config steering.prompts_file", f"{path} does not exist",
                                 "name a labelled .json or .jsonl prompt file (docs/formats.md), or null")
        records = read_prompt_records(path)
        return [{"key": f"prompt_{i}", "id": r.get("id", i), "text": r["text"], "labels": r.get("labels", {})}
                for i, r in enumerate(records)], path
    name = s.prompt_set
    found = [g for g in range(len(plan.prompts)) if plan.prompt_set(g) == name]
    if not found:
        raise TraitflowError("config steering.prompt_set", f"no prompt set '{name}' in this run",
                             "name one of the run's prompt sets, or set steering.prompts_file")
    prompts = [{"key": f"prompt_{plan.prompt_index(g)}", "id": plan.prompt_meta[g].get("id", plan.prompt_index(g)),
                "text": plan.prompts[g], "labels": plan.prompt_meta[g].get("labels", {})} for g in found]
    return prompts, f"prompt set '{name}'"


def steered_layers(s, trait, n_layers):
    layers = s.layers or [trait.layer]
    outside = [l for l in layers if l >= n_layers]
    if outside:
        raise TraitflowError("config steering.layers", f"{outside} do not exist (the model has layers "
                             f"0-{n_layers - 1})", "pick from those, or [] for each trait's vector layer")
    return sorted(set(layers))


def trait_vectors(s, trait, layers):
    """{layer: vector path} of the method steered (steering.method; auto: the trait's own)."""
    method = trait.method if s.method == "auto" else s.method
    folder = os.path.dirname(trait.vector_path)
    vectors = {l: os.path.join(folder, vector_filename(method, l)) for l in layers}
    if not trait.extract:  # vectors a user brought must exist now; ours are the extraction's outputs
        missing = [p for p in vectors.values() if not os.path.isfile(p)]
        if missing:
            raise TraitflowError("config steering.method/layers", f"trait '{trait.name}': no vector {missing[0]}",
                                 "steer a method and layer the trait has a vector for")
    return method, vectors


def plan_steering(s, plan):
    """{"prompts": [...], "source", "traits": {name: {...}}}, or None when steering is off (or no trait has prompts).

    s: config steering (traitflow.core.settings.SteeringSettings). Each trait: method, vector layer,
    {layer: vector path}, and per direction the keys of its prompts.
    """
    if not s.enabled:
        return None
    prompts, source = steering_prompts(s, plan)
    names = [t.name for t in plan.ok_traits] if s.traits == "all" else s.traits
    unknown = [n for n in names if n not in plan.traits or plan.traits[n].error]
    if unknown:
        raise TraitflowError("config steering.traits", f"{unknown} are not traits of this run",
                             f"pick from {[t.name for t in plan.ok_traits]}, or all")
    classifiers(s.behaviour, names)  # a bad pattern or function: one line now
    directions = s.directions + (["ablate"] if s.ablate else [])
    traits = {}
    for name in names:
        trait = plan.traits[name]
        layers = steered_layers(s, trait, plan.n_layers)
        try:
            method, vectors = trait_vectors(s, trait, layers)
            chosen = {d: [p["key"] for p in prompts if p["labels"].get(name) is DIRECTION_LABEL[d]][:s.max_prompts]
                      for d in directions}
            empty = [d for d, keys in chosen.items() if not keys]
            if empty:
                label = str(DIRECTION_LABEL[empty[0]]).lower()
                raise TraitflowError("config steering.traits", f"trait '{name}' has no prompt of {source} labelled "
                                     f"{name}: {label} to {empty[0]}", f"label some prompts {{{name}: {label}}} in "
                                     "the prompt file, or leave the trait out of steering.traits")
        except TraitflowError as err:
            if s.traits != "all":
                raise
            # steering every trait: one it cannot steer (no labelled prompts, no vector of the method and
            # layer steered: a trait that brings its own) is left out, not the run
            print(f"traitflow [plan] warning: steering leaves trait '{name}' out: {err}", file=sys.stderr)
            continue
        traits[name] = {"method": method, "vector_layer": trait.layer, "vectors": vectors, "prompts": chosen}
    if not traits:
        return None
    used = {k for t in traits.values() for keys in t["prompts"].values() for k in keys}
    # What the baselines depend on: the texts, not the labels (a label picks prompts; steer jobs carry that)
    chosen_prompts = [{k: p[k] for k in ("key", "id", "text")} for p in prompts if p["key"] in used]
    return {"prompts": chosen_prompts, "source": source, "traits": traits}


def steering_generation(s, gen):
    """Steering's generation settings (greedy unless steering.temperature says otherwise), as its jobs' params,
    from config steering (SteeringSettings) and the generation params (rules/common.smk generation_params)."""
    return {"max_new_tokens": s.max_new_tokens or gen["max_new_tokens"], "temperature": s.temperature,
            "top_p": gen["top_p"], "seed": gen["seed"], "chat_template": gen["chat_template"]}


def steering_files(exp_dir):
    """Where the stage writes: the baselines, each trait's responses ({trait} pattern), the tables, the figures."""
    return {"baseline": f"{exp_dir}/inference/steering/baseline.json",
            "responses": f"{exp_dir}/{{trait}}/steering/responses.json",
            "parquet": f"{exp_dir}/tables/steering.parquet", "summary": f"{exp_dir}/tables/steering_summary.csv",
            "figures": f"{exp_dir}/report/steering"}

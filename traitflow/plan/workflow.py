"""Parse-time planning for the Snakefile: make_plan() joins traits, vectors, prompt sets, shards and model facts.

make_plan reads the config once, into traitflow.core.settings.Settings (kept as Plan.settings): every module
below takes a section of it or plain values, never the config dict.

The config check (traitflow.experiment.config_check) and the model facts (traitflow.model.model_facts) have their own
modules; the names the Snakefile and scripts import from here are re-exported.

The Snakefile imports this on every invocation (and every cluster job re-parses
it), so it must stay cheap: no torch, no transformers, only small files read.
Every problem found here is a TraitflowError: one line, before any model loads.
"""

import difflib
import os
import sys
from dataclasses import dataclass, field
from functools import cached_property

from ..core.errors import TraitflowError
from ..core.settings import Settings, settings_from_config
from ..experiment.prompt_sets import (DEFAULT_SET, SET_NAME, check_prompt_lengths, load_prompt_list, load_prompt_sets,  # noqa: F401
                          plan_prompts, prompt_set_files, prompts_source, set_source)
from ..experiment.config_check import check_config  # noqa: F401 (the Snakefile imports it from here)
from ..experiment.layouts import no_traits_error, resolve_layout
from ..model.model_facts import (DEMO_MODEL, _model_files, model_config, model_dir, model_path,  # noqa: F401
                                 planned_chat_template)
from ..model.gguf import is_gguf  # noqa: F401 (rules/staleness.smk)
from ..experiment.traits import (FEW_EXAMPLES, TraitPlan, discover_traits, example_length_problem,  # noqa: F401
                                 experiment_not_found, plan_trait, resolve_trait_names, trait_name_problem)
from ..experiment.vectors import vector_problems


@dataclass
class Plan:
    experiment: str
    exp_dir: str
    model: str  # what the user named (recorded in metadata)
    model_path: str  # what from_pretrained loads
    model_files: list  # inputs that must exist before a model loads
    n_layers: int
    prompts: list  # every prompt text, by plan-wide id g (the default set first)
    shards: list  # [[g, ...], ...]: each shard within one prompt set
    traits: dict = field(default_factory=dict)  # name -> TraitPlan
    hidden_size: int | None = None
    context: int | None = None  # max_position_embeddings
    prompt_refs: list = field(default_factory=list)  # g -> (prompt set, index within the set)
    shard_names: list = field(default_factory=list)  # shard k -> "shard{j}" or "{set}_shard{j}" (stable per set)
    prompt_meta: list = field(default_factory=list)  # g -> {"id", "fields", "labels"} where the prompt has them
    settings: Settings | None = None  # the config as read by make_plan (None in a Plan built by hand)

    @cached_property
    def prompt_columns(self):
        """{column: [value per plan-wide prompt]}: prompt_id, fields, label_{name} (traitflow.experiment.prompt_columns)."""
        from ..experiment.prompt_columns import prompt_columns

        return prompt_columns(self.prompt_meta)

    def prompt_set(self, g):
        return self.prompt_refs[g][0] if self.prompt_refs else DEFAULT_SET

    def prompt_index(self, g):
        """Index of plan-wide prompt g within its set: its files are prompt_{index}."""
        return self.prompt_refs[g][1] if self.prompt_refs else g

    @property
    def ok_traits(self):
        return [t for t in self.traits.values() if t.error is None]


# ---- prompts -----------------------------------------------------------------------------------


def shard(indices, per_job):
    return [indices[k:k + per_job] for k in range(0, len(indices), per_job)]


# prompts_source, load_prompt_list, prompt_set_files, load_prompt_sets, check_prompt_lengths: traitflow.experiment.prompt_sets


# ---- the plan ----------------------------------------------------------------------------------


def make_plan(config):
    """The Plan of a config the schema has checked and completed. Raises TraitflowError."""
    settings = settings_from_config(config)
    exp = settings.experiment
    exp_dir = os.path.join("experiments", exp)
    if not os.path.isdir(exp_dir):
        raise experiment_not_found(exp_dir)
    model_cfg = model_config(settings.model)
    n_layers = int(model_cfg["num_hidden_layers"])
    prompt_sets, refs, metas = plan_prompts(settings.inputs, exp_dir)  # {set: [texts]}; per prompt (set, index), meta
    context = model_cfg.get("max_position_embeddings")
    if context:
        for name, texts in prompt_sets.items():
            check_prompt_lengths(texts, set_source(settings.inputs, exp_dir, name), model_dir(settings.model),
                                 int(context), settings.max_new_tokens)
    prompts = [p for texts in prompt_sets.values() for p in texts]
    shards, shard_names, start = [], [], 0
    for name, texts in prompt_sets.items():
        per_set = shard(list(range(start, start + len(texts))), settings.prompts_per_job)
        shards += per_set
        shard_names += [f"shard{j}" if name == DEFAULT_SET else f"{name}_shard{j}" for j in range(len(per_set))]
        start += len(texts)
    layer = settings.vector.layer
    if layer is not None and layer >= n_layers:
        raise TraitflowError("config vector.layer", f"layer {layer} does not exist (the model has layers "
                             f"0-{n_layers - 1})", "pick one of those, or null for the middle layer")
    layout = resolve_layout(settings.inputs.layout)
    discovered, near_misses = discover_traits(exp_dir, layout)
    for folder, problem, fix in near_misses:
        print(f"traitflow [plan] warning: {folder}: {problem}; fix: {fix}", file=sys.stderr)
    names = discovered if settings.traits == "all" else resolve_trait_names(settings.traits, discovered, exp_dir)
    if not names:
        raise no_traits_error(exp_dir, layout)
    plan = Plan(experiment=exp, exp_dir=exp_dir, model=settings.model.name, model_path=model_path(settings.model),
                model_files=_model_files(settings.model), n_layers=n_layers, prompts=prompts, shards=shards,
                hidden_size=int(model_cfg["hidden_size"]), context=int(context) if context else None,
                prompt_refs=refs, shard_names=shard_names, prompt_meta=metas, settings=settings)
    for name in names:
        plan.traits[name] = plan_trait(exp_dir, name, settings.vector, n_layers, settings.model.name, layout)
        if name not in discovered and not trait_name_problem(name) and not os.path.isdir(os.path.join(exp_dir, name)):
            close = difflib.get_close_matches(name, discovered + [d.split("/")[-1] for d in discovered], n=1)
            plan.traits[name].error = (f"config traits: no trait '{name}' in {exp_dir}; fix: "
                                       + (f"did you mean '{close[0]}'? " if close else "")
                                       + f"traits found: {', '.join(discovered) or 'none'}")
    runnable = [t for t in plan.traits.values() if t.error is None]
    bad = vector_problems([t.vector_path for t in runnable], plan.hidden_size)
    for t in runnable:
        t.error = bad.get(t.vector_path) or (example_length_problem(t, model_dir(settings.model), plan.context)
                                             if t.examples and plan.context else None)
    if not plan.ok_traits:
        raise TraitflowError(exp_dir, "no trait can run: " + " | ".join(
            f"trait '{t.name}': {t.error}" for t in plan.traits.values()))
    for t in plan.traits.values():
        if t.error:
            print(f"traitflow [plan] warning: trait '{t.name}' left out: {t.error}", file=sys.stderr)
    return plan


def drop_unusable_dynamics_vectors(dynamics, d_model):
    """Leave out, with a warning, the dynamics methods whose vector cannot be projected on (checked like traits')."""
    extra = sorted({m["vector"] for d in dynamics.values() for m in d["methods"] if not m["reuse"]})
    bad = vector_problems(extra, d_model)
    for trait, d in dynamics.items():
        for m in [m for m in d["methods"] if m["vector"] in bad]:
            print(f"traitflow [plan] warning: trait '{trait}': dynamics method '{m['method']}' left out: "
                  f"{bad[m['vector']]}", file=sys.stderr)
            d["methods"].remove(m)

"""Traits of an experiment: discovery, near misses, and each trait's vector or extraction plan.

Part of the parse-time plan (traitflow.plan.workflow.make_plan): cheap, no torch. Where
the traits live is the layout's business (traitflow.experiment.layouts): the default is a
folder per trait holding extraction/; config `layout` names other folders.
"""

import difflib
import os
import re
import sys
from dataclasses import dataclass, field

from . import layouts
from ..core.errors import TraitflowError
from .examples import count_examples, find_examples, known_position, plan_extraction, position_folder, read_examples
from .prompt_sets import too_long
from .vectors import (EXTRACTED_METHODS, METHODS, check_vector_model, choose_vector, list_vectors, read_metadata,
                      vector_filename)

# Trait names become folder names and a Snakemake wildcard value: no '.', spaces or braces; one '/'
# at most, between a category and the trait (experiments/{exp}/{category}/{trait}/extraction/).
_PART = r"[A-Za-z0-9][A-Za-z0-9_-]*"
TRAIT_NAME = re.compile(rf"^{_PART}(?:/{_PART})?$")
# Folders of an experiment that hold shared outputs, never traits.
NOT_TRAITS = {"inference", "viewer", "tables", "report"}
EXAMPLE_FILES = ("positive.txt", "negative.txt")
# Fewer examples per side than this get a warning: the vector is then mostly noise, and a
# probe separates its training examples perfectly whatever they say (train accuracy 1.0).
FEW_EXAMPLES = 10


@dataclass
class TraitPlan:
    name: str  # TRAIT, or CATEGORY/TRAIT for a trait one folder down
    extract: bool = False  # vectors come from our extraction rule
    method: str | None = None
    layer: int | None = None
    vector_path: str | None = None
    error: str | None = None  # why this trait cannot run (it is then left out)
    examples: dict = field(default_factory=dict)  # side -> examples file, when extract
    vectors: dict | None = None  # {(method, layer): path} brought in, when a layout found them (else the folder's)
    positions: list = field(default_factory=list)  # extracted at each (traitflow.experiment.examples); the first is projected
    presentation: str | None = None  # how the examples are read: raw | chat | pairs
    position: str | None = None  # where the vector was read (scores prompts there); None: unknown (a brought vector)

    @property
    def category(self):
        return self.name.split("/")[0] if "/" in self.name else None


# ---- traits ------------------------------------------------------------------------------------


def discover_traits(exp_dir, layout=None):
    """(trait names, near misses): a trait is a folder holding extraction/, directly under the
    experiment (TRAIT) or one folder down (CATEGORY/TRAIT). A near miss is a folder that looks
    like a trait but is not one: (path, problem, fix), reported as warnings.

    Under a layout other than the default, a trait is whatever its patterns match, and a near miss a
    folder of files that almost match (traitflow.experiment.layouts.unmatched); what they found is kept
    on the layout for plan_trait."""
    if not os.path.isdir(exp_dir):
        raise experiment_not_found(exp_dir)
    if layout is not None and layout.custom:
        layout.found = layouts.discover(layout, exp_dir)
        return list(layout.found), layouts.unmatched(layout, exp_dir)
    traits, near = [], []
    for d in sorted(os.listdir(exp_dir)):
        path = os.path.join(exp_dir, d)
        if d in NOT_TRAITS or d.startswith(".") or not os.path.isdir(path):
            continue
        if os.path.isdir(os.path.join(path, "extraction")):
            traits.append(d)
            continue
        below = [s for s in sorted(os.listdir(path)) if os.path.isdir(os.path.join(path, s, "extraction"))]
        traits += [f"{d}/{s}" for s in below]
        near += _too_deep(path, below)
        for folder in [path] if not below else [os.path.join(path, s) for s in sorted(os.listdir(path))
                                                   if s not in below]:
            miss = _near_miss(folder)
            if miss:
                near.append((folder, *miss))
    return traits, near


def _too_deep(category, traits):
    """Near misses for trait folders two or more levels below a category (never discovered: say so)."""
    found = []
    for sub in sorted(os.listdir(category)):
        folder = os.path.join(category, sub)
        if sub in traits or sub.startswith(".") or not os.path.isdir(folder):
            continue
        for root, dirs, _ in os.walk(folder):
            dirs.sort()
            if "extraction" in dirs:
                dirs.clear()  # nothing below a trait is another trait
                rel = os.path.relpath(root, os.path.dirname(category)).replace(os.sep, "/")
                found.append((root, f"not a trait: {rel} is {rel.count('/')} category levels down; a trait sits "
                              "directly in the experiment or one category folder down (CATEGORY/TRAIT)",
                              f"move it to {os.path.join(category, os.path.basename(root))}"))
    return found


def _near_miss(folder):
    """(problem, fix) when a folder looks like a trait that lacks its extraction/ folder, else None."""
    if not os.path.isdir(folder):
        return None
    entries = os.listdir(folder)
    loose = [f for f in (*EXAMPLE_FILES, "vectors") if f in entries]
    if loose:
        return (f"not a trait: {', '.join(loose)} must sit in {os.path.basename(folder)}/extraction/, not directly "
                "in the trait folder", f"move {' and '.join(loose)} into {folder}/extraction/")
    close = [e for e in entries if os.path.isdir(os.path.join(folder, e))
             and difflib.get_close_matches(e, ["extraction"], n=1, cutoff=0.75)]
    if close:
        return (f"not a trait: it has {close[0]}/, not extraction/", f"rename {folder}/{close[0]} to extraction")
    return None


def experiment_not_found(exp_dir):
    root = os.path.dirname(exp_dir) or "."
    existing = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))) if os.path.isdir(root) else []
    close = difflib.get_close_matches(os.path.basename(exp_dir), existing, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return TraitflowError(f"config experiment '{os.path.basename(exp_dir)}'", f"{exp_dir} not found",
                          f"{hint}experiments that exist: {', '.join(existing) or 'none'} "
                          f"(or create {exp_dir}/ with inference_prompts.txt and one folder per trait)")


def resolve_trait_names(requested, discovered, exp_dir):
    """config traits -> plan names: a bare TRAIT also finds CATEGORY/TRAIT; ambiguity is an error."""
    names = []
    for name in dict.fromkeys(requested):
        nested = [d for d in discovered if "/" in d and d.split("/", 1)[1] == name]
        matches = ([name] if name in discovered else []) + nested
        if len(matches) > 1:
            raise TraitflowError(f"config traits: '{name}'", f"ambiguous: {' and '.join(matches)} both exist",
                                 "name the one you mean as CATEGORY/TRAIT")
        names.append(matches[0] if matches else name)
    return names


def trait_name_problem(name):
    parts = name.split("/")
    if len(parts) > 2 and all(re.match(rf"^{_PART}$", p) for p in parts):  # a well-formed name, too deep
        return (f"trait name '{name}' is {len(parts) - 1} category levels down; a trait sits directly in the "
                f"experiment (TRAIT) or one category folder down (CATEGORY/TRAIT); fix: move the folder "
                f"to {parts[0]}/{parts[-1]} and name it so")
    if not TRAIT_NAME.match(name):
        return (f"trait name '{name}' would break file paths or wildcards; fix: rename it with letters, digits, "
                "'_' and '-' only, starting with a letter or digit")
    if any(part in NOT_TRAITS for part in name.split("/")):
        return f"trait name '{name}' is reserved for shared outputs; fix: rename the trait"
    return None


def _examples_problem(files, name, where):
    """Why the examples files ({side: path}) cannot be used, or None (read here: small files, UTF-8 checked).

    Too few to trust (but enough to run) is a warning on stderr.
    """
    try:
        counts = count_examples(files, name)
    except TraitflowError as err:
        return str(err)
    if min(counts.values()) < FEW_EXAMPLES:
        have = " and ".join(plural(n, f"{side} example") for side, n in counts.items())
        print(f"traitflow [plan] warning: trait '{name}': {where}: only {have}: the vector will be mostly "
              f"noise and a probe's train accuracy says nothing; fix: add examples (at least {FEW_EXAMPLES} per "
              "side, tens are better)", file=sys.stderr)
    return _same_examples(files, name)


def _same_examples(files, name):
    """The trait's problem when its positive and negative examples are the same (in any order): their
    difference, the vector, would be all zeros, and every capture that projects on it would stop."""
    sides = [sorted((e["prompt"].strip(), (e["response"] or "").strip()) for e in read_examples(path, side, name))
             for side, path in files.items()]
    if sides[0] != sides[1]:
        return None
    pos, neg = files["positive"], files["negative"]
    where = pos if pos == neg else f"{pos} and {neg}"
    return (f"{where}: the positive and negative examples are the same, so the vector (their difference) would be "
            "all zeros; fix: put examples that show the trait on the positive side and examples that lack it on the "
            "negative side")


def example_length_problem(trait, tokenizer_dir, context):
    """The trait's problem when an example has more tokens than the model's context (counted like prompts:
    traitflow.experiment.prompt_sets.too_long), else None."""
    for side, path in trait.examples.items():
        texts = [e["prompt"] + (e["response"] or "") for e in read_examples(path, side, trait.name)]
        for i, n in too_long(texts, tokenizer_dir, context):
            return (f"{path}: {side} example {i + 1} ({texts[i][:30]!r}...) is {n} tokens, more than the model's "
                    f"context of {context} tokens; fix: shorten or split the example")
    return None


def plural(n, word):
    return f"{n} {word}{'' if n == 1 else 's'}"


def plan_trait(exp_dir, name, vector, n_layers, model=None, layout=None):
    """A trait's TraitPlan under config vector (traitflow.core.settings.VectorSettings); its error says why
    it cannot run."""
    trait = TraitPlan(name=name)
    trait.error = trait_name_problem(name)
    if trait.error:
        return trait
    if layout is not None and layout.custom:
        return _plan_layout_trait(trait, exp_dir, vector, n_layers, model, layout)
    extraction = os.path.join(exp_dir, name, "extraction")
    vectors_dir = os.path.join(extraction, "vectors")
    trait.layer = n_layers // 2 if vector.layer is None else vector.layer
    method = vector.method
    if not os.path.isdir(os.path.join(exp_dir, name)):
        trait.error = (f"{os.path.join(exp_dir, name)}: trait folder not found; "
                       "fix: create it or remove the trait from traits")
        return trait
    if not os.path.isdir(extraction):
        miss = _near_miss(os.path.join(exp_dir, name))
        problem, fix = miss or ("not a trait: no extraction/ folder", f"create {extraction}/")
        trait.error = f"{os.path.join(exp_dir, name)}: {problem}; fix: {fix}"
        return trait
    present = [f for f in EXAMPLE_FILES if os.path.exists(os.path.join(extraction, f))]
    try:
        form, files = find_examples(extraction)
    except TraitflowError as err:
        trait.error = str(err)
        return trait
    trait.extract = form is not None
    if trait.extract and (method == "auto" or method in EXTRACTED_METHODS):
        trait.examples = files
        return _plan_extraction(trait, vector, vectors_dir, method, extraction)
    try:
        available = list_vectors(vectors_dir)
    except TraitflowError as err:  # a vector as both .pt and .safetensors
        trait.error = str(err)
        return trait
    if not available:
        if len(present) == 1:
            missing = next(f for f in EXAMPLE_FILES if f not in present)
            trait.error = (f"{extraction}: has {present[0]} but no {missing}, and no vectors; fix: add {missing} "
                           "(one example per line)")
        elif trait.extract:
            trait.error = (f"{vectors_dir}: no vector for method={method} layer={trait.layer}; extraction computes "
                           f"{' and '.join(EXTRACTED_METHODS)} only; fix: set vector.method to one of those, "
                           f"or add vectors/{vector_filename(method, trait.layer)}")
        elif _misnamed_vectors(vectors_dir):
            found = _misnamed_vectors(vectors_dir)
            trait.error = (f"{vectors_dir}: {', '.join(found[:3])} {'is' if len(found) == 1 else 'are'} not named "
                           f"{{method}}_layer{{L}}.pt; fix: rename {'it' if len(found) == 1 else 'them'}, e.g. "
                           f"{vector_filename('probe' if method == 'auto' else method, trait.layer)} (methods: "
                           f"{', '.join(METHODS)}; .safetensors works too)")
        else:
            trait.error = (f"{extraction}: no vectors and no extraction examples; fix: add positive.txt and "
                           "negative.txt (one example per line) or vectors/{method}_layer{L}.pt (or .safetensors)")
        return trait
    try:
        trait.method, trait.vector_path = choose_vector(available, method, trait.layer, vectors_dir)
        if model is not None:
            check_vector_model(trait.vector_path, model, vector.allow_model_mismatch)
        trait.position = known_position(read_metadata(trait.vector_path))
    except TraitflowError as err:
        trait.error = str(err)
    return trait


def _plan_extraction(trait, vector, vectors_dir, method, where):
    """An extracted trait's method, positions, presentation and vector path (under the first position's folder)."""
    trait.error = _examples_problem(trait.examples, trait.name, where)
    trait.method = "probe" if method == "auto" else method
    try:
        trait.positions, trait.presentation = plan_extraction(vector, trait.examples)
    except TraitflowError as err:
        trait.error = trait.error or str(err)
        return trait
    trait.position = trait.positions[0]
    trait.vector_path = os.path.join(vectors_dir, position_folder(trait.position),
                                     vector_filename(trait.method, trait.layer))
    return trait


def _misnamed_vectors(vectors_dir):
    """Vector-like files whose names the method/layer pattern does not match."""
    if not os.path.isdir(vectors_dir):
        return []
    return sorted(f for f in os.listdir(vectors_dir) if f.endswith((".pt", ".safetensors")))


def _plan_layout_trait(trait, exp_dir, vector, n_layers, model, layout):
    """plan_trait under a layout's patterns: examples mean extraction (into our own folder), else a vector found."""
    if layout.found is None:
        layout.found = layouts.discover(layout, exp_dir)
    trait.layer = n_layers // 2 if vector.layer is None else vector.layer
    method = vector.method
    found = layout.found.get(trait.name)
    patterns = " or ".join(layout.vectors + layout.examples)
    if found is None:
        trait.error = f"{exp_dir}: no files of trait '{trait.name}' match {patterns}; fix: check layout and traits"
        return trait
    try:
        examples = layouts.examples_of(found, layout.fields)
        trait.vectors = layouts.vectors_of(found, layout.fields)
    except TraitflowError as err:
        trait.error = str(err)
        return trait
    trait.extract = len(examples) == 2
    # Extraction writes where the default layout keeps vectors: under our own experiment folder,
    # never into a brought-in one (rules/common.smk extracted_vectors).
    ours = os.path.join(exp_dir, trait.name, "extraction", "vectors")
    if trait.extract and (method == "auto" or method in EXTRACTED_METHODS):
        trait.examples = examples
        return _plan_extraction(trait, vector, ours, method, os.path.dirname(examples["positive"]))
    if not trait.vectors:
        have = next(iter(examples.items()), None)
        lacking = "negative" if "positive" in examples else "positive"
        trait.error = (f"{have[1]}: {have[0]} examples but no {lacking} ones (layout.examples: "
                       f"{' or '.join(layout.examples)}), and no vectors matching {' or '.join(layout.vectors)}; "
                       f"fix: add the {lacking} examples file" if have else
                       f"{exp_dir}: trait '{trait.name}': no vectors; fix: check layout.vectors")
        return trait
    try:
        where = os.path.commonpath(list(trait.vectors.values()))  # the folder holding all of the trait's vectors
        trait.method, trait.vector_path = choose_vector(trait.vectors, method, trait.layer, where)
        if model is not None:
            check_vector_model(trait.vector_path, model, vector.allow_model_mismatch)
        trait.position = known_position(read_metadata(trait.vector_path))
    except TraitflowError as err:
        trait.error = str(err)
    return trait

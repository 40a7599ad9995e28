"""Parse-time planning for the Snakefile: config checks, traits, vectors, prompt shards and model facts.

The Snakefile imports this on every invocation (and every cluster job re-parses
it), so it must stay cheap: no torch, no transformers, only small files read.
Every problem found here is a TraitflowError: one line, before any model loads.
"""

import difflib
import glob
import json
import os
import re
import sys
from dataclasses import dataclass, field
from types import SimpleNamespace

from .arch import architecture_for
from .errors import TraitflowError
from .prompts import check_prompts, read_lines, read_prompts
from .vectors import (EXTRACTED_METHODS, METHODS, check_vector_model, choose_vector, list_vectors, vector_filename,
                      vector_problems)

DEMO_MODEL = "traitflow-demo"
DEMO_MODEL_DIR = "resources/models/traitflow-demo"
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

    @property
    def category(self):
        return self.name.split("/")[0] if "/" in self.name else None


DEFAULT_SET = "default"  # inference_prompts.txt (or prompts_file / prompts): the seed's paths, no set folder


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

    def prompt_set(self, g):
        return self.prompt_refs[g][0] if self.prompt_refs else DEFAULT_SET

    def prompt_index(self, g):
        """Index of plan-wide prompt g within its set: its files are prompt_{index}."""
        return self.prompt_refs[g][1] if self.prompt_refs else g

    @property
    def ok_traits(self):
        return [t for t in self.traits.values() if t.error is None]


# ---- config ------------------------------------------------------------------------------------


def check_config(config, schema_path, configfiles=(), overrides=None):
    """Validate config against the schema; the first problem becomes one line naming the key.

    Snakemake's own validate() prints the whole config and schema; this names
    where the key came from (--config, else the first of configfiles, in
    precedence order, that sets it), the key and the fix.
    """
    import jsonschema
    import yaml

    with open(schema_path, encoding="utf-8") as fh:
        schema = yaml.safe_load(fh)
    _coerce_command_line(config, schema, overrides or {})
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config), key=lambda e: list(e.path))
    if not errors:
        return
    err = errors[0]  # not best_match: it descends into oneOf branches and names one alternative only
    more = f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})" if len(errors) > 1 else ""
    path = list(err.absolute_path)
    key = ".".join(str(p) for p in path)
    if err.validator == "additionalProperties":
        known = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(known))
        source = _config_source(path + extra[:1], configfiles, overrides or {})
        unknown = ", ".join(f"'{key + '.' if key else ''}{k}'" for k in extra)
        close = [m for k in extra for m in difflib.get_close_matches(k, known, n=1)]
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise TraitflowError(source, f"unknown config key {unknown}{more}",
                             f"{hint}known keys{' in ' + key if key else ''}: {', '.join(known)}")
    source = _config_source(path, configfiles, overrides or {})
    if err.validator == "required":
        raise TraitflowError(source, f"{err.message}{more}", "add it (see config.yaml in the repository)")
    verdict = "is out of range for" if err.validator in _BOUNDS else "is not"
    raise TraitflowError(f"{source}, key {key}", f"{err.instance!r} {verdict} {_expected(err)}{more}",
                         f"set {key} to {_expected(err)} (schemas/config.schema.yaml lists every key)")


_BOUNDS = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}


def _coerce_command_line(config, schema, overrides):
    """Snakemake's --config reads values nested in {...} or [...] as strings ('4', 'true'):
    where the schema wants a number, boolean or null, read them as YAML, as config.yaml would be."""
    for key, value in overrides.items():
        if isinstance(value, (dict, list)):
            _merge(config, key, _from_command_line(value, schema.get("properties", {}).get(key, {})))


def _from_command_line(value, schema):
    import yaml

    if isinstance(value, dict):
        return {k: _from_command_line(v, schema.get("properties", {}).get(k, {})) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_command_line(v, schema.get("items", {})) for v in value]
    types = schema.get("type", [])
    types = types if isinstance(types, list) else [types]
    if isinstance(value, str) and "string" not in types:
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if any(_is(parsed, t) for t in types):
            return parsed
    return value


def _merge(node, key, value):
    if isinstance(value, dict) and isinstance(node.get(key), dict):
        for k, v in value.items():
            _merge(node[key], k, v)
    else:
        node[key] = value


def _is(value, json_type):
    if json_type == "boolean":
        return isinstance(value, bool)
    if json_type == "null":
        return value is None
    python_types = {"integer": int, "number": (int, float)}.get(json_type, ())
    return not isinstance(value, bool) and isinstance(value, python_types)


def _config_source(path, configfiles, overrides):
    """Where the value at path came from: --config, or the first config file that sets it."""
    import yaml

    def sets(node):
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    if sets(overrides):
        return "--config"
    files = list(dict.fromkeys(os.path.abspath(str(f)) for f in configfiles))
    for f in files:
        with open(f, encoding="utf-8") as fh:
            if sets(yaml.safe_load(fh)):
                return os.path.relpath(f)
    return " + ".join(os.path.relpath(f) for f in files) or "config"


def _expected(err):
    if err.validator in ("oneOf", "anyOf"):
        return " or ".join(_describe_schema(sub) for sub in err.validator_value)
    if err.validator == "pattern":
        return f"a string matching {err.schema['pattern']}"
    return _describe_schema(err.schema)


def _describe_schema(s):
    if "enum" in s:
        return repr(s["enum"][0]) if len(s["enum"]) == 1 else "one of " + ", ".join(repr(v) for v in s["enum"])
    types = s.get("type", "any value")
    types = types if isinstance(types, list) else [types]
    names = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
             "array": "a list", "object": "a mapping", "null": "null"}
    words = [names.get(t, t) for t in types]
    if "array" in types and "items" in s:
        item = _describe_schema(s["items"]).removeprefix("a ").removeprefix("an ")
        words[types.index("array")] = f"a list of {item}s"
    bounds = [f"{op} {s[k]}" for k, op in _BOUNDS.items() if k in s]
    return " or ".join(words) + (f" ({', '.join(bounds)})" if bounds else "")


# ---- model -------------------------------------------------------------------------------------


def model_path(config):
    return DEMO_MODEL_DIR if config["model"] == DEMO_MODEL else config["model"]


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
        return DEMO_MODEL_DIR if os.path.isdir(DEMO_MODEL_DIR) else None
    if os.path.isdir(name):
        return name
    hit = _hub_config(name)
    return os.path.dirname(hit) if hit else None


def model_config(config):
    """The model's config.json as a dict, read without importing transformers."""
    from .demo import DEFAULT_SPEC

    name = config["model"]
    if name == DEMO_MODEL:
        return {"model_type": "gemma2", **DEFAULT_SPEC, **config.get("demo_model", {})}
    where = f"config model '{name}'"
    if os.path.isdir(name):
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
        return [os.path.join(DEMO_MODEL_DIR, "config.json")]
    if os.path.isdir(config["model"]):
        return [os.path.join(config["model"], "config.json")]
    return []


# ---- prompts -----------------------------------------------------------------------------------


def shard(indices, per_job):
    return [indices[k:k + per_job] for k in range(0, len(indices), per_job)]


def prompts_source(config, exp_dir):
    if config.get("prompts"):
        return "config prompts"
    return config.get("prompts_file") or os.path.join(exp_dir, "inference_prompts.txt")


def load_prompt_list(config, exp_dir):
    if config.get("prompts"):
        return check_prompts(config["prompts"], "config prompts")
    return read_prompts(prompts_source(config, exp_dir))


SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def prompt_set_files(exp_dir):
    """{set name: file} for experiments/{exp}/inference/prompts/{set}.txt or .jsonl."""
    folder = os.path.join(exp_dir, "inference", "prompts")
    found = {}
    for f in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        name, ext = os.path.splitext(f)
        if ext not in (".txt", ".jsonl"):
            continue
        path = os.path.join(folder, f)
        if not SET_NAME.match(name) or name == DEFAULT_SET:
            raise TraitflowError(path, f"'{name}' cannot name a prompt set (it becomes a folder name; "
                                 f"'{DEFAULT_SET}' is inference_prompts.txt)",
                                 "rename the file with letters, digits, '_' and '-' only")
        if name in found:
            raise TraitflowError(path, f"prompt set '{name}' is also {found[name]}", "keep one of the two files")
        found[name] = path
    return found


def load_prompt_sets(config, exp_dir):
    """{set: [prompts]}: the default set (inference_prompts.txt, prompts_file or prompts) when it
    exists, then the named sets of inference/prompts/, as chosen by config prompt_sets."""
    named = prompt_set_files(exp_dir)
    default_exists = bool(config.get("prompts")) or os.path.exists(prompts_source(config, exp_dir))
    wanted = config.get("prompt_sets", "all")
    if wanted == "all":
        wanted = ([DEFAULT_SET] if default_exists or not named else []) + list(named)
    sets = {}
    for name in dict.fromkeys(wanted):
        if name == DEFAULT_SET:
            sets[name] = load_prompt_list(config, exp_dir)
        elif name in named:
            sets[name] = read_prompts(named[name])
        else:
            close = difflib.get_close_matches(name, [DEFAULT_SET, *named], n=1)
            raise TraitflowError(f"config prompt_sets: '{name}'", "no such prompt set",
                                 (f"did you mean '{close[0]}'? " if close else "")
                                 + f"sets: {', '.join([DEFAULT_SET] * default_exists + list(named)) or 'none'} "
                                 f"(a set is {exp_dir}/inference/prompts/NAME.txt)")
    return sets


def check_prompt_lengths(prompts, where, tokenizer_dir, context, max_new_tokens):
    """Refuse, before any model loads, a prompt that cannot fit the model's context.

    A token covers at least one UTF-8 byte (SentencePiece adds at most one word
    marker), so only a prompt with more bytes than the room left needs counting;
    those few are counted with the tokenizers library (cheap, no transformers).
    The count leaves out the chat template, which only adds tokens: the exact
    check runs again in the generation job.
    """
    room = context - max_new_tokens
    suspects = [i for i, p in enumerate(prompts) if len(p.encode("utf-8")) + 1 > room]
    tokenizer_file = os.path.join(tokenizer_dir, "tokenizer.json") if tokenizer_dir else None
    if not suspects or not tokenizer_file or not os.path.exists(tokenizer_file):
        return
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(tokenizer_file)
    for i in suspects:
        n = len(tokenizer.encode(prompts[i], add_special_tokens=False).ids)
        if n + max_new_tokens > context:
            at = f"{where}[{i}]" if where == "config prompts" else f"{where}:{i + 1}"
            raise TraitflowError(at, f"prompt {i} is {n} tokens; with generation.max_new_tokens={max_new_tokens} it "
                                 f"exceeds the model's context of {context} tokens",
                                 "shorten or split the prompt, or lower generation.max_new_tokens")


# ---- traits ------------------------------------------------------------------------------------


def discover_traits(exp_dir):
    """(trait names, near misses): a trait is a folder holding extraction/, directly under the
    experiment (TRAIT) or one folder down (CATEGORY/TRAIT). A near miss is a folder that looks
    like a trait but is not one: (path, problem, fix), reported as warnings."""
    if not os.path.isdir(exp_dir):
        raise experiment_not_found(exp_dir)
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
        for folder in [path] if not below else [os.path.join(path, s) for s in sorted(os.listdir(path))
                                                   if s not in below]:
            miss = _near_miss(folder)
            if miss:
                near.append((folder, *miss))
    return traits, near


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
    if not TRAIT_NAME.match(name):
        return (f"trait name '{name}' would break file paths or wildcards; fix: rename it with letters, digits, "
                "'_' and '-' only, starting with a letter or digit")
    if any(part in NOT_TRAITS for part in name.split("/")):
        return f"trait name '{name}' is reserved for shared outputs; fix: rename the trait"
    return None


def _examples_problem(extraction, name):
    """Why the extraction examples cannot be used, or None (read here: small files, UTF-8 checked).

    Too few to trust (but enough to run) is a warning on stderr.
    """
    counts = {}
    for f in EXAMPLE_FILES:
        path = os.path.join(extraction, f)
        try:
            counts[f] = n = sum(1 for line in read_lines(path, "examples file") if line.strip())
        except TraitflowError as err:
            return str(err)
        if n < 2:
            return f"{path}: {plural(n, 'example')}, need at least 2; fix: add one example per line"
    if min(counts.values()) < FEW_EXAMPLES:
        have = " and ".join(plural(n, f"{f.removesuffix('.txt')} example") for f, n in counts.items())
        print(f"traitflow [plan] warning: trait '{name}': {extraction}: only {have}: the vector will be mostly "
              f"noise and a probe's train accuracy says nothing; fix: add examples (at least {FEW_EXAMPLES} per "
              "side, tens are better)", file=sys.stderr)
    return None


def plural(n, word):
    return f"{n} {word}{'' if n == 1 else 's'}"


def plan_trait(exp_dir, name, vector_cfg, n_layers, model=None):
    trait = TraitPlan(name=name)
    trait.error = trait_name_problem(name)
    if trait.error:
        return trait
    extraction = os.path.join(exp_dir, name, "extraction")
    vectors_dir = os.path.join(extraction, "vectors")
    trait.layer = n_layers // 2 if vector_cfg.get("layer") is None else vector_cfg["layer"]
    method = vector_cfg.get("method", "auto")
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
    trait.extract = len(present) == 2
    available = list_vectors(vectors_dir)
    if trait.extract and (method == "auto" or method in EXTRACTED_METHODS):
        trait.error = _examples_problem(extraction, name)
        trait.method = "probe" if method == "auto" else method
        trait.vector_path = os.path.join(vectors_dir, vector_filename(trait.method, trait.layer))
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
            check_vector_model(trait.vector_path, model, vector_cfg.get("allow_model_mismatch", False))
    except TraitflowError as err:
        trait.error = str(err)
    return trait


def _misnamed_vectors(vectors_dir):
    """Vector-like files whose names the method/layer pattern does not match."""
    if not os.path.isdir(vectors_dir):
        return []
    return sorted(f for f in os.listdir(vectors_dir) if f.endswith((".pt", ".safetensors")))


# ---- the plan ----------------------------------------------------------------------------------


def make_plan(config):
    exp = config["experiment"]
    exp_dir = os.path.join("experiments", exp)
    if not os.path.isdir(exp_dir):
        raise experiment_not_found(exp_dir)
    model_cfg = model_config(config)
    n_layers = int(model_cfg["num_hidden_layers"])
    prompt_sets = load_prompt_sets(config, exp_dir)
    context = model_cfg.get("max_position_embeddings")
    if context:
        named = prompt_set_files(exp_dir)
        for name, texts in prompt_sets.items():
            where = prompts_source(config, exp_dir) if name == DEFAULT_SET else named[name]
            check_prompt_lengths(texts, where, model_dir(config), int(context), config["generation"]["max_new_tokens"])
    prompts = [p for texts in prompt_sets.values() for p in texts]
    refs = [(name, i) for name, texts in prompt_sets.items() for i in range(len(texts))]
    shards, shard_names, start = [], [], 0
    for name, texts in prompt_sets.items():
        per_set = shard(list(range(start, start + len(texts))), config["capture"]["prompts_per_job"])
        shards += per_set
        shard_names += [f"shard{j}" if name == DEFAULT_SET else f"{name}_shard{j}" for j in range(len(per_set))]
        start += len(texts)
    layer = config["vector"].get("layer")
    if layer is not None and layer >= n_layers:
        raise TraitflowError("config vector.layer", f"layer {layer} does not exist (the model has layers "
                             f"0-{n_layers - 1})", "pick one of those, or null for the middle layer")
    discovered, near_misses = discover_traits(exp_dir)
    for folder, problem, fix in near_misses:
        print(f"traitflow [plan] warning: {folder}: {problem}; fix: {fix}", file=sys.stderr)
    names = discovered if config["traits"] == "all" else resolve_trait_names(config["traits"], discovered, exp_dir)
    if not names:
        raise TraitflowError(exp_dir, "no traits found (a trait is a folder holding extraction/, directly or in a "
                             "category folder)", f"add {exp_dir}/TRAIT/extraction/ with positive.txt and negative.txt, "
                             "or vectors/")
    plan = Plan(experiment=exp, exp_dir=exp_dir, model=config["model"], model_path=model_path(config),
                model_files=_model_files(config), n_layers=n_layers, prompts=prompts, shards=shards,
                hidden_size=int(model_cfg["hidden_size"]), context=int(context) if context else None,
                prompt_refs=refs, shard_names=shard_names)
    for name in names:
        plan.traits[name] = plan_trait(exp_dir, name, config["vector"], n_layers, config["model"])
        if name not in discovered and not trait_name_problem(name) and not os.path.isdir(os.path.join(exp_dir, name)):
            close = difflib.get_close_matches(name, discovered + [d.split("/")[-1] for d in discovered], n=1)
            plan.traits[name].error = (f"config traits: no trait '{name}' in {exp_dir}; fix: "
                                       + (f"did you mean '{close[0]}'? " if close else "")
                                       + f"traits found: {', '.join(discovered) or 'none'}")
    runnable = [t for t in plan.traits.values() if t.error is None]
    bad = vector_problems([t.vector_path for t in runnable], plan.hidden_size)
    for t in runnable:
        t.error = bad.get(t.vector_path)
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

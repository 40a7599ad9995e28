"""Where an experiment's traits live: path patterns with named fields (config `layout`).

A pattern is a path relative to the experiment folder (or absolute, or starting
with ~) with fields in braces. {trait} and an optional {category} name the
trait (CATEGORY/TRAIT), {method} and {layer} a vector, {side} an examples file
(positive or negative), {set} a prompt set. Any other field ({variant},
{position}, ...) is an extra: layout.fields fixes it to one value, or to a list
of choices (the first that exists wins); left free, it may take any value, and
two values for one trait are an error that names them.

Brought-in folders are only read: extraction writes under
experiments/{exp}/{trait}/extraction/vectors/, whatever the layout says.
"""

import difflib
import glob
import os
import re
from dataclasses import dataclass, field

from ..core.errors import TraitflowError
from .vectors import two_files_error

_FIELD = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SIDES = ("positive", "negative")
# Fields with a meaning to the plan; any other field is an extra (variant, position, component, ...).
NAMED = {"trait", "category", "method", "layer", "side", "set"}
_VALUE = {"layer": r"\d+", "method": r"[A-Za-z0-9_]+?", "side": "positive|negative"}
REQUIRED = {"vectors": ("trait", "method", "layer"), "examples": ("trait", "side"), "prompts": ("set",)}

PRESETS = {
    # Today's layouts: TRAIT/ or CATEGORY/TRAIT/ folders holding extraction/ (the original at 069fa70).
    "traitflow": {
        "vectors": ["{trait}/extraction/vectors/{method}_layer{layer}.pt",
                    "{category}/{trait}/extraction/vectors/{method}_layer{layer}.pt"],
        "examples": ["{trait}/extraction/{side}.txt", "{category}/{trait}/extraction/{side}.txt"],
        "prompts": None,  # None: named sets are inference/prompts/{set}.txt, .jsonl or .json
        "fields": {},
    },
    # The original project's current layout: one extraction/ folder, vectors per model variant,
    # token position and component. Its examples live outside the experiment (datasets/traits/):
    # set layout.examples to that path to extract here.
    "trait-interp": {
        "vectors": ["extraction/{category}/{trait}/{variant}/vectors/{position}/{component}/{method}/layer{layer}.pt"],
        "examples": [],
        "prompts": None,  # its JSON sets ({"prompts": [{"id", "text"}]}) go in inference/prompts/ as they are
        "fields": {"component": "residual"},  # we project on the residual stream
    },
}
DEFAULT_PRESET = "traitflow"


@dataclass
class Layout:
    preset: str
    vectors: list
    examples: list
    prompts: str | None
    fields: dict
    custom: bool  # False for the plain traitflow preset: folder discovery, with its near-miss checks
    found: dict | None = None  # {trait: Found}, filled by traits.discover_traits

    def describe(self):
        overrides = self.custom and self.preset == DEFAULT_PRESET
        return f"layout '{self.preset}'" + (" (with overrides)" if overrides else "")


@dataclass
class Found:
    """One trait's files under a layout: [(path, {extra field: value})] per (method, layer) and per side."""
    vectors: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)


def resolve_layout(setting):
    """config layout (a preset name, or a mapping of preset / vectors / examples / prompts / fields) -> Layout."""
    raw = setting or DEFAULT_PRESET
    raw = {"preset": raw} if isinstance(raw, str) else dict(raw)
    name = raw.get("preset", DEFAULT_PRESET)
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        raise TraitflowError("config layout.preset", f"no layout preset '{name}'",
                             (f"did you mean '{close[0]}'? " if close else "") + f"presets: {', '.join(PRESETS)}")
    preset = PRESETS[name]
    layout = Layout(preset=name, vectors=_as_list(raw.get("vectors", preset["vectors"])),
                    examples=_as_list(raw.get("examples", preset["examples"])),
                    prompts=raw.get("prompts", preset["prompts"]), fields=dict(raw.get("fields", {})),
                    custom=set(raw) - {"preset"} != set() or name != DEFAULT_PRESET)
    used = _check(layout)
    # the preset's fixed fields apply where the patterns still use them (a pattern of your own may not)
    layout.fields = {**{k: v for k, v in preset["fields"].items() if k in used}, **layout.fields}
    return layout


def _as_list(value):
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def fields_of(pattern):
    return _FIELD.findall(pattern)


def _check(layout):
    """Refuse a malformed pattern or a field in layout.fields that no pattern uses; returns the fields used."""
    used = set()
    patterns = [("vectors", p) for p in layout.vectors] + [("examples", p) for p in layout.examples]
    patterns += [("prompts", layout.prompts)] if layout.prompts else []
    for kind, pattern in patterns:
        names = fields_of(pattern)
        bad = [n for n in names if not _NAME.match(n)]
        if bad:
            raise TraitflowError(f"config layout.{kind}", f"'{{{bad[0]}}}' in '{pattern}' is not a field name",
                                 "name fields with letters, digits and '_' ({trait}, {layer}, {variant}, ...)")
        missing = [n for n in REQUIRED[kind] if n not in names]
        if missing:
            raise TraitflowError(f"config layout.{kind}", f"pattern '{pattern}' has no {{{missing[0]}}}",
                                 f"a {kind} pattern names {', '.join('{' + n + '}' for n in REQUIRED[kind])}")
        if kind == "prompts" and not pattern.endswith((".txt", ".jsonl", ".json")):
            raise TraitflowError("config layout.prompts", f"pattern '{pattern}' does not end in .txt, .jsonl or .json",
                                 "end it with the prompt files' extension, e.g. inference/prompts/{set}.json")
        used.update(names)
    for name, value in layout.fields.items():
        if name in NAMED:
            raise TraitflowError(f"config layout.fields.{name}", f"{{{name}}} is found from the files, not fixed",
                                 f"remove it from layout.fields (fixed fields are extras: "
                                 f"{', '.join(sorted(used - NAMED)) or 'none in these patterns'})")
        if name not in used:
            raise TraitflowError(f"config layout.fields.{name}", "no pattern has this field",
                                 f"remove it, or use {{{name}}} in a pattern (extras in use: "
                                 f"{', '.join(sorted(used - NAMED)) or 'none'})")
    return used


def full_pattern(pattern, exp_dir):
    pattern = os.path.expanduser(pattern)
    return os.path.normpath(pattern if os.path.isabs(pattern) else os.path.join(exp_dir, pattern))


def compile_pattern(pattern, exp_dir, fields):
    """(glob, regex) for a pattern: fixed fields substituted, the others wildcards (one folder level each).

    A vectors pattern ending in .pt matches .safetensors too.
    """
    parts = _FIELD.split(full_pattern(pattern, exp_dir))
    globbed, regex, seen = "", "", set()
    for i, part in enumerate(parts):
        if i % 2 == 0:
            tail = i == len(parts) - 1 and part.endswith(".pt")
            globbed += glob.escape(part[:-3]) + ".*" if tail else glob.escape(part)
            regex += re.escape(part[:-3]) + r"\.(?:pt|safetensors)" if tail else re.escape(part)
            continue
        if part in seen:  # the same field twice: the same value twice
            globbed, regex = globbed + "*", regex + f"(?P={part})"
            continue
        seen.add(part)
        value = fields.get(part)
        if isinstance(value, (str, int)):
            globbed, regex = globbed + glob.escape(str(value)), regex + f"(?P<{part}>{re.escape(str(value))})"
        else:
            choices = "|".join(re.escape(str(v)) for v in value) if value else _VALUE.get(part, r"[^/]+")
            globbed, regex = globbed + "*", regex + f"(?P<{part}>{choices})"
    return globbed.replace("**", "*"), re.compile(regex)


def _matches(pattern, exp_dir, fields):
    globbed, regex = compile_pattern(pattern, exp_dir, fields)
    for path in sorted(glob.glob(globbed)):
        m = regex.fullmatch(path)
        if m and os.path.isfile(path):
            yield path, m.groupdict()


def trait_name(values):
    return f"{values['category']}/{values['trait']}" if values.get("category") else values["trait"]


def discover(layout, exp_dir):
    """{trait name: Found} for every file the layout's vectors and examples patterns match."""
    found = {}
    for pattern in layout.vectors:
        for path, values in _matches(pattern, exp_dir, layout.fields):
            key = (values["method"], int(values["layer"]))
            found.setdefault(trait_name(values), Found()).vectors.setdefault(key, []).append((path, _extras(values)))
    for pattern in layout.examples:
        for path, values in _matches(pattern, exp_dir, layout.fields):
            found.setdefault(trait_name(values), Found()).examples.setdefault(values["side"], []).append(
                (path, _extras(values)))
    return dict(sorted(found.items()))


def _extras(values):
    return {k: v for k, v in values.items() if k not in NAMED}


def pick(candidates, fields, what):
    """One value per extra field for a trait: a list's first choice that has files, else the only value seen.

    candidates is [(path, extras)]; returns the paths whose extras agree with the picks. Two values
    of a free field are an error named at the folder the candidates share.
    """
    picked = candidates
    for name in sorted({k for _, extras in candidates for k in extras}):
        seen = sorted({extras[name] for _, extras in picked})
        choices = fields.get(name)
        if isinstance(choices, list):
            seen = [next(c for c in map(str, choices) if c in seen)]
        if len(seen) > 1:
            raise TraitflowError(os.path.commonpath([p for p, _ in candidates]),
                                 f"{what} exist for {name} {' and '.join(seen)}",
                                 f"choose one with layout.fields.{name}: {seen[0]} (or a list: the first that "
                                 "exists wins)")
        picked = [(p, e) for p, e in picked if e[name] == seen[0]]
    return [p for p, _ in picked]


def vectors_of(found, fields):
    """{(method, layer): path} of one trait, its extra fields picked consistently across all its vectors."""
    keep = set(pick([item for items in found.vectors.values() for item in items], fields, "vectors"))
    vectors = {}
    for key, items in sorted(found.vectors.items()):
        kept = [p for p, _ in items if p in keep]
        if len(kept) > 1:  # layer2.pt and layer2.safetensors
            raise two_files_error(kept[0], kept[1], *key)
        if kept:
            vectors[key] = kept[0]
    return vectors


def examples_of(found, fields):
    """{side: path} of one trait's examples files."""
    return {side: pick(found.examples[side], fields, f"{side} examples")[0]
            for side in SIDES if side in found.examples}


def prompt_set_files(layout, exp_dir):
    """{set name: file} for every file the layout's prompts pattern matches (extras picked like a trait's)."""
    found = {}
    for path, values in _matches(layout.prompts, exp_dir, layout.fields) if layout.prompts else []:
        found.setdefault(values["set"], []).append((path, _extras(values)))
    for name, items in found.items():
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]*$", name) or name == "default":
            raise TraitflowError(items[0][0], f"'{name}' cannot name a prompt set (it becomes a folder name; "
                                 "'default' is inference_prompts.txt)",
                                 "rename the file with letters, digits, '_' and '-' only")
    return {name: pick(items, layout.fields, "prompt files")[0] for name, items in found.items()}


# ---- near misses: files that look like a trait's but match no pattern -----------------------------

_OUTPUTS = {"inference", "viewer", "tables", "report"}


def unmatched(layout, exp_dir, limit=4000):
    """[(folder, problem, fix)]: one per folder under a pattern's root holding vector files (or positive /
    negative examples files) that no pattern matches, whatever its extras' values, but that one or two
    folder-level edits would make match; the fix names the nearest valid form.

    Our own extraction's vectors ({trait}/extraction/vectors/) are never near misses.
    """
    kinds = [(p, (".pt", ".safetensors")) for p in layout.vectors]
    kinds += [(p, (os.path.splitext(p)[1],)) for p in layout.examples]
    shapes = [compile_pattern(p, exp_dir, {})[1] for p, _ in kinds]
    best = {}  # file -> (cost, pattern, nearest form)
    for pattern, exts in kinds:
        root, segments = _split_root(full_pattern(pattern, exp_dir))
        for path in _files_under(root, exp_dir, exts, examples=pattern in layout.examples, limit=limit):
            if any(other.fullmatch(path) for other in shapes):
                continue
            cost, form = _nearest(os.path.relpath(path, root).split(os.sep), segments, layout.fields)
            if cost <= 2 and cost < best.get(path, (3,))[0]:
                best[path] = (cost, pattern, os.path.join(root, form))
    by_folder = {}
    for path, (_, pattern, form) in sorted(best.items()):
        by_folder.setdefault(os.path.dirname(path), []).append((pattern, form))
    near = []
    for folder, hits in by_folder.items():
        files, them = ("files here match", "them") if len(hits) > 1 else ("file here matches", "it")
        near.append((folder, f"{len(hits)} {files} no pattern of {layout.describe()} ({hits[0][0]})",
                     f"move or rename {them} to the nearest valid form, {hits[0][1]}, or change the layout's patterns "
                     "(docs/layouts.md)"))
    return near


def _split_root(full):
    """(the folder before a pattern's first field, the pattern's segments below it)."""
    head = full.split("{", 1)[0]
    root = head.rstrip("/") if head.endswith("/") else os.path.dirname(head)
    return root, os.path.relpath(full, root).split(os.sep)


def _files_under(root, exp_dir, exts, examples, limit):
    seen = 0
    for folder, dirs, files in os.walk(root):
        rel = os.path.relpath(folder, exp_dir).split(os.sep)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (rel == ["."] and d in _OUTPUTS))
        if "extraction" in rel[:3] and rel[rel.index("extraction") + 1:][:1] == ["vectors"]:
            continue  # our extraction's output: {trait}/extraction/vectors/ or {category}/{trait}/...
        for f in sorted(files):
            if f.endswith(exts) and (not examples or any(side in f for side in SIDES)):
                yield os.path.join(folder, f)
        seen += 1
        if seen > limit:
            return


def _nearest(parts, segments, fields):
    """(cost, form): the fewest folder-level edits (a folder added, removed or renamed) that make parts match
    segments; a part fitting a segment only with another value of a fixed field costs a quarter."""
    def fit(part, segment, fixed):
        return compile_pattern("/" + segment, "/", fixed)[1].fullmatch("/" + part)

    def cost(part, segment):
        return 0 if fit(part, segment, fields) else 0.25 if fit(part, segment, {}) else 1

    def filled(segment):  # a segment as the form shows it: fixed fields filled in, other fields in braces
        return _FIELD.sub(lambda m: str(_first(fields.get(m[1]))) if _first(fields.get(m[1])) is not None else m[0],
                          segment)

    n, m = len(parts), len(segments)
    table = [[(float(i + j), []) for j in range(m + 1)] for i in range(n + 1)]
    for i in range(n + 1):
        for j in range(m + 1):
            options = [(table[i - 1][j][0] + 1, table[i - 1][j][1])] if i else []  # ties: remove a later folder
            if i and j:
                c = cost(parts[i - 1], segments[j - 1])
                options.append((table[i - 1][j - 1][0] + c, table[i - 1][j - 1][1] +
                                [parts[i - 1] if c == 0 else filled(segments[j - 1])]))
            if j:
                options.append((table[i][j - 1][0] + 1, table[i][j - 1][1] + [filled(segments[j - 1])]))
            if options:
                table[i][j] = min(options, key=lambda o: o[0])
    total, form = table[n][m]
    return total, "/".join(form)


def _first(value):
    return value[0] if isinstance(value, list) and value else value


# ---- "no traits found" --------------------------------------------------------------------------


def looked_in(layout, exp_dir):
    """The folders a layout's patterns search: each pattern's path up to its first field."""
    folders = []
    for pattern in layout.vectors + layout.examples:
        head = full_pattern(pattern, exp_dir).split("{", 1)[0]
        folders.append(head if head.endswith("/") else os.path.dirname(head) + "/")
    return list(dict.fromkeys(folders))


def nearest_match(exp_dir, limit=4000):
    """The first vector-like or examples file under the experiment folder (outputs left out), or None."""
    skip = {"inference", "viewer", "tables", "report", ".snakemake"}
    seen = 0
    for root, dirs, files in os.walk(exp_dir):
        dirs[:] = sorted(d for d in dirs if d not in skip and not d.startswith("."))
        for f in sorted(files):
            if f.endswith((".pt", ".safetensors")) or f in ("positive.txt", "negative.txt"):
                return os.path.join(root, f)
        seen += 1
        if seen > limit:
            return None
    return None


def no_traits_error(exp_dir, layout):
    """One line naming the folders looked at, the nearest match, and a preset that would find traits."""
    near = nearest_match(exp_dir)
    fits = [name for name, p in PRESETS.items() if name != layout.preset
            and discover(Layout(name, p["vectors"], p["examples"], p["prompts"], p["fields"], True), exp_dir)]
    top = os.path.join(exp_dir, "extraction")
    if layout.custom:
        patterns = " or ".join(layout.vectors + layout.examples)
        problem = (f"no traits found under {layout.describe()} (looked for {patterns} in "
                   f"{', '.join(looked_in(layout, exp_dir))}")
    else:
        problem = ("no traits found (a trait is a folder holding extraction/, directly or in a category folder; "
                   f"looked in {exp_dir}/ and its folders")
    problem += f"; nearest match: {near})" if near else "; nothing there looks like a vector or an examples file)"
    if fits:
        fix = f"set `layout: {fits[0]}` in {exp_dir}/config.yaml (docs/layouts.md)"
    elif os.path.isdir(top) and layout.preset == DEFAULT_PRESET:
        fix = (f"{top}/ looks like the original project's current layout: set `layout: trait-interp` in "
               f"{exp_dir}/config.yaml, or layout.vectors to your pattern (docs/layouts.md)")
    elif layout.custom:
        fix = "fix layout.vectors / layout.examples so they match your files (docs/layouts.md)"
    else:
        fix = (f"add {exp_dir}/TRAIT/extraction/ with positive.txt and negative.txt, or vectors/; or describe "
               "your folders with layout (docs/layouts.md)")
    return TraitflowError(exp_dir, problem, fix)

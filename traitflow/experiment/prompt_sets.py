"""Finding an experiment's prompt sets, at plan time (no torch; only the prompt files are read).

The default set is experiments/{exp}/inference_prompts.{txt,jsonl,json} (or config
prompts_file / prompts); named sets are experiments/{exp}/inference/prompts/{set}.{txt,jsonl,json}.
A set found in two formats is refused: which one is meant cannot be guessed.
"""

import contextlib
import difflib
import io
import os
import re
from dataclasses import replace

from ..core.errors import TraitflowError
from .prompt_columns import prompt_meta
from .prompts import PROMPT_EXTS, check_prompts, read_prompt_records

DEFAULT_SET = "default"  # inference_prompts.txt (or prompts_file / prompts): the seed's paths, no set folder
SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
DEFAULT_STEM = "inference_prompts"


def default_prompt_files(exp_dir):
    """The experiment's inference_prompts.{txt,jsonl,json} files that exist."""
    return [p for p in (os.path.join(exp_dir, DEFAULT_STEM + ext) for ext in PROMPT_EXTS) if os.path.exists(p)]


def prompts_source(inputs, exp_dir):
    """Where the default set comes from: "config prompts", config prompts_file, or the one inference_prompts file.

    With no such file this names inference_prompts.txt (reading it then says it is missing).
    """
    if inputs.prompts is not None:
        return "config prompts"
    if inputs.prompts_file:
        return inputs.prompts_file
    found = default_prompt_files(exp_dir)
    if len(found) > 1:
        raise TraitflowError(found[1], f"the default prompt set is also {found[0]}",
                             f"keep one of {', '.join(os.path.basename(f) for f in found)} (move or delete the others)")
    return found[0] if found else os.path.join(exp_dir, DEFAULT_STEM + ".txt")


def load_prompt_list(inputs, exp_dir):
    """The default set's prompt records."""
    if inputs.prompts is not None:
        return [{"text": t} for t in check_prompts(inputs.prompts, "config prompts")]
    path = prompts_source(inputs, exp_dir)
    if not os.path.exists(path) and not inputs.prompts_file:
        raise TraitflowError(path, "prompts file not found",
                             f"create it with one prompt per line (or {DEFAULT_STEM}.jsonl or .json, see "
                             "docs/formats.md), or point the config at the right file")
    return read_prompt_records(path)


def prompt_set_files(exp_dir):
    """{set name: file} for experiments/{exp}/inference/prompts/{set}.txt, .jsonl or .json."""
    folder = os.path.join(exp_dir, "inference", "prompts")
    found = {}
    for f in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        name, ext = os.path.splitext(f)
        if ext not in PROMPT_EXTS:
            continue
        path = os.path.join(folder, f)
        if not SET_NAME.match(name) or name == DEFAULT_SET:
            raise TraitflowError(path, f"'{name}' cannot name a prompt set (it becomes a folder name; "
                                 f"'{DEFAULT_SET}' is {DEFAULT_STEM}.txt)",
                                 "rename the file with letters, digits, '_' and '-' only")
        if name in found:
            raise TraitflowError(path, f"prompt set '{name}' is also {found[name]}", "keep one of the two files")
        found[name] = path
    return found


def named_set_files(inputs, exp_dir):
    """{set: file}: config layout.prompts' matches where the layout has a prompts pattern
    (traitflow.experiment.layouts), else inference/prompts/{set}.{txt,jsonl,json}."""
    layout = inputs.layout
    if isinstance(layout, dict) and layout.get("prompts"):
        from .layouts import prompt_set_files as layout_set_files, resolve_layout

        return layout_set_files(resolve_layout(layout), exp_dir)
    return prompt_set_files(exp_dir)


def default_set_exists(inputs, exp_dir):
    return inputs.prompts is not None or os.path.exists(prompts_source(inputs, exp_dir))


def load_prompt_sets(inputs, exp_dir):
    """{set: [prompt records]}: the default set (inference_prompts.*, prompts_file or prompts) when it
    exists, then the named sets of inference/prompts/, as chosen by config prompt_sets."""
    named = named_set_files(inputs, exp_dir)
    default_exists = default_set_exists(inputs, exp_dir)
    wanted = inputs.prompt_sets
    if wanted == "all":
        wanted = ([DEFAULT_SET] if default_exists or not named else []) + list(named)
    sets = {}
    for name in dict.fromkeys(wanted):
        if name == DEFAULT_SET:
            sets[name] = load_prompt_list(inputs, exp_dir)
        elif name in named:
            sets[name] = read_prompt_records(named[name])
        else:
            close = difflib.get_close_matches(name, [DEFAULT_SET, *named], n=1)
            raise TraitflowError(f"config prompt_sets: '{name}'", "no such prompt set",
                                 (f"did you mean '{close[0]}'? " if close else "")
                                 + f"sets: {', '.join([DEFAULT_SET] * default_exists + list(named)) or 'none'} "
                                 f"(a set is {exp_dir}/inference/prompts/NAME.txt, .jsonl or .json)")
    return sets


def set_source(inputs, exp_dir, name):
    """The file (or "config prompts") a set's prompts come from: what error lines name."""
    return prompts_source(inputs, exp_dir) if name == DEFAULT_SET else named_set_files(inputs, exp_dir)[name]


def plan_prompts(inputs, exp_dir):
    """(texts, refs, metas) over every chosen set, by plan-wide id: refs[g] = (set, index in set),
    metas[g] = the prompt's id, fields and labels (traitflow.experiment.prompt_columns.prompt_meta)."""
    sets = load_prompt_sets(inputs, exp_dir)
    records = [(name, i, r) for name, recs in sets.items() for i, r in enumerate(recs)]
    return ({name: [r["text"] for r in recs] for name, recs in sets.items()},
            [(name, i) for name, i, _ in records], [prompt_meta(r) for _, _, r in records])


def experiment_prompt_counts(inputs, exp_dir):
    """{set: number of prompts} over every set the experiment has now (selected or not); None for a
    set whose file cannot be read now (its files are then never called orphans), and None in all
    when the sets themselves cannot be listed."""
    try:
        names = ([DEFAULT_SET] if default_set_exists(inputs, exp_dir) else []) + list(named_set_files(inputs, exp_dir))
    except TraitflowError:
        return None
    counts = {}
    for name in names:
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # the plan has warned about duplicates already
                counts[name] = len(load_prompt_sets(replace(inputs, prompt_sets=[name]), exp_dir)[name])
        except TraitflowError:
            counts[name] = None
    return counts


def too_long(texts, tokenizer_dir, room):
    """[(index, tokens)] of the texts with more than room tokens (the tokenizer's own special tokens left
    out; a special token's spelling in the text counts as the plain text it is read as).

    A token covers at least one UTF-8 byte (SentencePiece adds at most one word
    marker), so only a text with more bytes than room needs counting; those few
    are counted with the tokenizers library (cheap, no transformers). [] without
    the model's tokenizer.json (the demo model before it is built).
    """
    suspects = [i for i, t in enumerate(texts) if len(t.encode("utf-8")) + 1 > room]
    tokenizer_file = os.path.join(tokenizer_dir, "tokenizer.json") if tokenizer_dir else None
    if not suspects or not tokenizer_file or not os.path.exists(tokenizer_file):
        return []
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(tokenizer_file)
    tokenizer.encode_special_tokens = True  # as the jobs read text (traitflow.model.generate.encode_prompt)
    counts = [(i, len(tokenizer.encode(texts[i], add_special_tokens=False).ids)) for i in suspects]
    return [(i, n) for i, n in counts if n > room]


def check_prompt_lengths(prompts, where, tokenizer_dir, context, max_new_tokens):
    """Refuse, before any model loads, a prompt that cannot fit the model's context.

    The count leaves out the chat template, which only adds tokens: the exact
    check runs again in the generation job.
    """
    long = too_long(prompts, tokenizer_dir, context - max_new_tokens)
    if long:
        i, n = long[0]
        at = (f"{where}[{i}]" if where == "config prompts" else f"{where}: prompts[{i}]"
              if where.endswith(".json") else f"{where}:{i + 1}")
        raise TraitflowError(at, f"prompt {i} is {n} tokens; with generation.max_new_tokens={max_new_tokens} it "
                             f"exceeds the model's context of {context} tokens",
                             "shorten or split the prompt, or lower generation.max_new_tokens")

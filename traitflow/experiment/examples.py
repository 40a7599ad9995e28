"""A trait's extraction examples: their forms, how they are presented, and where each is read.

Forms, in experiments/{exp}/{trait}/extraction/:

    positive.txt, negative.txt       one example per line: raw text, or a user prompt (presentation chat)
    positive.jsonl, negative.jsonl   one {"prompt": ..., "response": ...} per line: the prompt in the
                                     user turn, the response in the assistant turn (presentation pairs)
    examples.json                    a labelled JSON prompt set ({"prompts": [{"text", "labels"}]}):
                                     label {trait} true is positive, false negative (presentation chat)

Positions (config vector.position), each a token span of the presented example whose mean
residual is the example's feature (special tokens such as <bos> always left out):

    all            every token (today's reading of raw lines)
    prompt_last    the prompt's last token: in the chat template, the assistant turn's opening
    response       every response token
    response[:N]   the first N response tokens

The same span scores a captured prompt + response (position_mask), so a vector read at
prompt_last ranks prompts by their last prompt token. Plan-time: no torch.
"""

import json
import os
import re

from ..core.errors import TraitflowError
from .prompts import _loads, read_lines, read_prompt_records

SIDES = ("positive", "negative")
FORMS = {  # form -> the files that make it
    "txt": ("positive.txt", "negative.txt"),
    "jsonl": ("positive.jsonl", "negative.jsonl"),
    "json": ("examples.json",),
}
PRESENTATIONS = ("raw", "chat", "pairs")
FITS = {"txt": ("raw", "chat"), "jsonl": ("pairs",), "json": ("chat",)}  # first: what auto picks
DEFAULT_POSITION = "all"  # its vectors keep the folder's plain names ({method}_layer{L}.pt)
UNRECORDED_POSITION = "response"  # where a vector that records no position scores prompts (the response mean)
_POSITION = re.compile(r"^(all|prompt_last|response)(?:\[:([1-9][0-9]*)\])?$")
PAIR_SHAPE = '{"prompt": "...", "response": "..."}'


def parse_position(position, where="config vector.position"):
    """(kind, N): ('prompt_last', None), ('response', 5) for response[:5]; refuses anything else."""
    m = _POSITION.match(str(position))
    if not m or (m[2] and m[1] != "response"):
        raise TraitflowError(where, f"'{position}' is not a position",
                             "use all, prompt_last, response or response[:N] (N a positive integer)")
    return m[1], int(m[2]) if m[2] else None


def positions_of(setting):
    """config vector.position (one or a list) -> [positions], checked, without repeats; the first is projected."""
    positions = list(dict.fromkeys([setting] if isinstance(setting, str) else setting))
    for p in positions:
        parse_position(p)
    return positions


def known_position(meta):
    """A vector metadata's "position" where it is one (a brought vector's may say anything), else None."""
    try:
        return parse_position(meta["position"]) and meta["position"]
    except (KeyError, TraitflowError):
        return None


def position_folder(position):
    """The vectors' sub-folder of a position: '' for the default (today's paths), else the original
    project's {position} folder name (prompt[-1] -> prompt_-1, response[:] -> response_all,
    response[:5] -> response__5)."""
    kind, n = parse_position(position)
    if position == DEFAULT_POSITION:
        return ""
    return "prompt_-1" if kind == "prompt_last" else f"response__{n}" if n else "response_all"


def original_position(position):
    """The original project's spelling of a position: prompt[-1], response[:], response[:5], all[:]."""
    kind, n = parse_position(position)
    return {"prompt_last": "prompt[-1]", "all": "all[:]"}.get(kind) or f"response[:{n or ''}]"


def find_examples(extraction):
    """(form, {side: file}) of the examples in an extraction folder; (None, {}) when no form is complete.

    The JSON set serves both sides. Two complete forms at once is an error (TraitflowError):
    which is meant cannot be guessed.
    """
    present = {form: [f for f in files if os.path.exists(os.path.join(extraction, f))] for form, files in FORMS.items()}
    complete = [form for form, files in FORMS.items() if len(present[form]) == len(files)]
    if len(complete) > 1:
        a, b = (FORMS[f][0] for f in complete[:2])
        raise TraitflowError(extraction, f"examples in two forms ({a} and {b})", "keep one form, move the other away")
    if not complete:
        return None, {}
    files = [os.path.join(extraction, f) for f in FORMS[complete[0]]]
    return complete[0], dict(zip(SIDES, files if len(files) == 2 else files * 2))


def plan_extraction(vector, files):
    """(positions, presentation) of a trait's extraction from config vector.position / vector.presentation
    (traitflow.core.settings.VectorSettings) and its examples files ({side: file}), checked: a position the
    examples do not have is an error."""
    where = files["positive"]
    presentation = presentation_of(vector.presentation, form_of(where), where)
    positions = positions_of(DEFAULT_POSITION if vector.position is None else vector.position)
    for p in positions:
        check_position(p, presentation, where)
    return positions, presentation


def form_of(path):
    ext = os.path.splitext(path)[1].lstrip(".")
    return ext if ext in FORMS else "txt"


def presentation_of(setting, form, where):
    """config vector.presentation (auto | raw | chat | pairs) for examples of this form, checked."""
    fits = FITS[form]
    if setting == "auto":
        return fits[0]
    if setting not in fits:
        needs = {"raw": "text lines (positive.txt and negative.txt)",
                 "chat": "prompts (positive.txt and negative.txt, or a labelled examples.json)",
                 "pairs": f"positive.jsonl and negative.jsonl ({PAIR_SHAPE} per line)"}[setting]
        raise TraitflowError(where, f"vector.presentation is {setting}, which reads {needs}",
                             f"set vector.presentation to {' or '.join(('auto',) + fits)}, or write the "
                             "examples in that form")
    return setting


def check_position(position, presentation, where):
    """A response position needs examples with responses."""
    kind, _ = parse_position(position)
    if kind == "response" and presentation != "pairs":
        raise TraitflowError(where, f"vector.position {position} reads response tokens, but these examples are "
                             f"{'text lines' if presentation == 'raw' else 'prompts'} without responses",
                             f"write positive.jsonl and negative.jsonl ({PAIR_SHAPE} per line), or set "
                             "vector.position to all or prompt_last")


def read_examples(path, side, trait, form=None):
    """[{"prompt": str, "response": str or None}] of one side.

    A .txt file's lines are prompts (raw text is a prompt without a response), a .jsonl's lines
    pairs, a JSON set's prompts labelled {trait} (the name's last part) true or false.
    """
    form = form or form_of(path)
    if form == "json":
        label = trait.split("/")[-1]
        records = read_prompt_records(path)
        examples = [{"prompt": r["text"], "response": None} for r in records
                    if r.get("labels", {}).get(label) is (side == "positive")]
    elif form == "jsonl":
        examples = [_pair(path, n, line) for n, line in enumerate(read_lines(path, "examples file"), 1)
                    if line.strip()]
    else:
        examples = [{"prompt": x, "response": None} for x in read_lines(path, "examples file") if x.strip()]
    if len(examples) < 2:
        n = f"{len(examples)} example{'' if len(examples) == 1 else 's'}"
        if form == "json":
            raise TraitflowError(path, f"{n} labelled {trait.split('/')[-1]}: {str(side == 'positive').lower()}, "
                                 "need at least 2", "label more of its prompts")
        raise TraitflowError(path, f"{n}, need at least 2", "add one example per line")
    return examples


def _pair(path, n, line):
    at = f"{path}:{n}"
    try:
        obj = _loads(line, at)
    except ValueError:
        raise TraitflowError(at, "not a JSON object", f"write one {PAIR_SHAPE} per line") from None
    if not isinstance(obj, dict):
        raise TraitflowError(at, f"a JSON {type(obj).__name__}, not an object", f"write one {PAIR_SHAPE} per line")
    for key in ("prompt", "response"):
        if key not in obj:
            raise TraitflowError(at, f'no "{key}"', f"give every line a prompt and a response: {PAIR_SHAPE}")
        if not isinstance(obj[key], str) or not obj[key].strip():
            raise TraitflowError(at, f'"{key}" is {json.dumps(obj[key])[:40]}, not a non-empty string',
                                 f"write {PAIR_SHAPE}")
    return {"prompt": obj["prompt"], "response": obj["response"]}


def count_examples(files, trait):
    """{side: number of examples} of a trait's examples files (read and checked here)."""
    return {side: len(read_examples(path, side, trait)) for side, path in files.items()}


def position_mask(position, n_prompt, token_ids, special_ids=()):
    """[bool per token]: the tokens of a prompt + response sequence that make up the position.

    Special tokens (<bos>, <|im_start|>, ...) are left out: their residual is the same for every
    sequence and its norm dwarfs the rest. A span of special tokens only keeps them all; an empty
    span (no response) is all False.
    """
    kind, n = parse_position(position)
    length = len(token_ids)
    special = set(special_ids)
    plain = [t not in special for t in token_ids]
    if kind == "prompt_last":
        last = next((i for i in range(min(n_prompt, length) - 1, -1, -1) if plain[i]), n_prompt - 1)
        return [i == last for i in range(length)]
    span = range(length) if kind == "all" else range(n_prompt, length)
    kept = [i for i in span if plain[i]] or list(span)
    if n is not None:
        kept = kept[:n]
    keep = set(kept)
    return [i in keep for i in range(length)]


def special_token_ids(backend_tokenizer):
    """Ids of the tokens a `tokenizers.Tokenizer` marks special (what position_mask leaves out)."""
    return sorted(i for i, tok in backend_tokenizer.get_added_tokens_decoder().items() if tok.special)


def model_special_ids(model_folder):
    """special_token_ids of a model folder's tokenizer.json ([] without one), with the tokenizers
    library alone (no transformers): what the scoring jobs use."""
    path = os.path.join(model_folder, "tokenizer.json") if model_folder else ""
    if not os.path.exists(path):
        return []
    from tokenizers import Tokenizer

    return special_token_ids(Tokenizer.from_file(path))

"""Reading prompts: .txt (one per line), .jsonl ({"text": ...} per line) or a JSON prompt set.

A JSON prompt set is the original project's format:

    {"name": "...", "description": "...",
     "prompts": [{"id": 1, "text": "...", "note": "...", "labels": {"refusal": true}}, ...]}

Every prompt is read as a record {"text": str, "id": ..., "fields": {...}, "labels": {...}}
(id, fields and labels only where the prompt has them; .txt prompts have none). The
tables carry them as columns (traitflow.experiment.prompt_columns); texts are all a model job sees.
"""

import codecs
import json
import os
import re
import sys
import unicodedata

from ..core.errors import TraitflowError

PROMPT_EXTS = (".txt", ".jsonl", ".json")
# Any of \r\n, \r, \n ends a line: a file from an old Mac editor (CR only) is as many prompts as it shows.
_LINE_END = re.compile(r"\r\n|\r|\n")
_JSON_SET_SHAPE = '{"prompts": [{"id": 1, "text": "..."}, ...]}'
_JSON_SET_FIX = f"write {_JSON_SET_SHAPE}"
_SURROGATE = re.compile("[\ud800-\udfff]")


def read_lines(path, what="file"):
    """The lines of a UTF-8 text file (a final line ending ends the last line, it adds no empty one)."""
    if not os.path.exists(path):
        raise TraitflowError(path, f"{what} not found",
                             "create it with one entry per line, or point the config at the right file")
    text = _read_text(path)
    lines = _LINE_END.split(text)
    if lines[-1] == "":
        lines.pop()
    return lines


# UTF-32's marks first: UTF-32-LE's begins with UTF-16-LE's.
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF16_LE, "UTF-16"),
              (codecs.BOM_UTF16_BE, "UTF-16"))


def _read_text(path):
    """A text file's UTF-8 text; UTF-16 and UTF-32 (a byte-order mark, or NUL bytes: ASCII saved as UTF-16
    without a mark is valid UTF-8 with a NUL after every letter) are refused, not read as garbage."""
    with open(path, "rb") as fh:
        raw = fh.read()
    wide = next((name for bom, name in _WIDE_BOMS if raw.startswith(bom)), None)
    if wide:
        raise TraitflowError(path, f"{wide} text (it starts with a {wide} byte-order mark), not UTF-8",
                             "re-save the file as UTF-8")
    if b"\0" in raw:
        at = raw.index(b"\0")
        line = len(_LINE_END.findall(raw[:at].decode("utf-8", "replace"))) + 1
        raise TraitflowError(f"{path}:{line}", f"a NUL byte at offset {at}: UTF-16 or UTF-32 text (or a binary "
                             "file), not UTF-8", "re-save the file as UTF-8")
    try:
        return raw.decode("utf-8-sig")  # a BOM from a Windows editor is not part of the first prompt
    except UnicodeDecodeError as err:
        line = len(_LINE_END.findall(raw[: err.start].decode("utf-8", "replace"))) + 1
        raise TraitflowError(f"{path}:{line}", f"not valid UTF-8 (byte {raw[err.start]:#04x} at offset {err.start})",
                             "re-save the file as UTF-8") from None


def read_prompts(path):
    """The prompt texts of a .txt, .jsonl or .json prompt file."""
    return [r["text"] for r in read_prompt_records(path)]


def read_prompt_records(path):
    """Prompt records of a .txt, .jsonl or .json file, checked (see the module docstring)."""
    if path.endswith(".json"):
        return _json_set(path)
    lines = read_lines(path, "prompts file")
    if not path.endswith(".jsonl"):
        records = [{"text": line} for line in lines]
        check_prompts(lines, path)
        return records
    records = [_jsonl_record(path, n, line) for n, line in enumerate(lines, 1)]
    check_prompts([r["text"] for r in records], path)
    _check_ids(records, lambda i: f"{path}:{i + 1}", lambda i: f"line {i + 1}")
    return records


def _loads(text, at):
    """json.loads, refusing NaN/Infinity (not JSON; the viewer's files could not hold them) and a key
    repeated in one object (the later one would silently win)."""
    def constant(name):
        raise TraitflowError(at, f"{name} is not valid JSON", "write a number or null")

    def pairs(items):
        keys = [k for k, _ in items]
        for k in keys:
            if keys.count(k) > 1:
                raise TraitflowError(at, f"key \"{k}\" appears twice in one object", "keep one of the two")
        return dict(items)
    return json.loads(text, parse_constant=constant, object_pairs_hook=pairs)


def _jsonl_record(path, n, line):
    try:
        obj = _loads(line, f"{path}:{n}")
        obj["text"]
    except (ValueError, KeyError, TypeError):
        raise TraitflowError(f"{path}:{n}", 'not a JSON object with a "text" field',
                             'write one {"text": "..."} object per line') from None
    if not isinstance(obj["text"], str):
        raise TraitflowError(f"{path}:{n}", f'"text" is a {type(obj["text"]).__name__}, not a string',
                             'write one {"text": "..."} object per line')
    return _record(obj, f"{path}:{n}")


def _json_set(path):
    if not os.path.exists(path):
        raise TraitflowError(path, "prompts file not found", "create it, or point the config at the right file")
    try:
        doc = _loads(_read_text(path), path)
    except json.JSONDecodeError as err:
        raise TraitflowError(f"{path}:{err.lineno}:{err.colno}", f"not valid JSON ({err.msg})",
                             f"correct the JSON at that line and column (a prompt set is {_JSON_SET_SHAPE})") from None
    if not isinstance(doc, dict) or "prompts" not in doc:
        what = "an object without a \"prompts\" key" if isinstance(doc, dict) else f"a JSON {_kind(doc)}"
        raise TraitflowError(path, f"lacks \"prompts\" (the file holds {what})", _JSON_SET_FIX)
    if not isinstance(doc["prompts"], list):
        raise TraitflowError(path, f"\"prompts\" is a {_kind(doc['prompts'])}, not a list", _JSON_SET_FIX)

    def label(i):
        p = doc["prompts"][i]
        has_id = isinstance(p, dict) and _valid_id(p.get("id"))
        return f"prompts[{i}]" + (f" (id {json.dumps(p['id'])})" if has_id else "")

    def where(i):
        return f"{path}: {label(i)}"

    records = []
    for i, p in enumerate(doc["prompts"]):
        if not isinstance(p, dict) or not isinstance(p.get("text"), str):
            got = ("no \"text\"" if isinstance(p, dict) and "text" not in p else
                   f"\"text\" is a {_kind(p['text'])}" if isinstance(p, dict) else f"a {_kind(p)}, not an object")
            raise TraitflowError(where(i), f"no string \"text\" ({got})",
                                 'give every prompt a string "text": {"id": 1, "text": "..."}')
        records.append(_record(p, where(i)))
    check_prompts([r["text"] for r in records], path, where, label)
    _check_ids(records, where, label)
    return records


def _kind(value):
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def _valid_id(value):
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _record(obj, at):
    """{"text", "id"?, "fields"?, "labels"?} of one prompt object; labels must map names to true/false."""
    for name, value in obj.items():
        # JSON lets "\ud800" stand alone; no file can hold it as UTF-8 (writing it would fail later, unnamed)
        lone = _SURROGATE.search(name + json.dumps(value, ensure_ascii=False))
        if lone:
            raise TraitflowError(at, f'"{name}" holds a lone surrogate (\\u{ord(lone[0]):04x}), not a character',
                                 "write the character itself, or both halves of its surrogate pair "
                                 "(\\ud83d\\ude00)")
    record = {"text": obj["text"]}
    if "id" in obj:
        if not _valid_id(obj["id"]):
            raise TraitflowError(at, f"id {json.dumps(obj['id'])} is not an integer or a string",
                                 "give every prompt its own integer (or string) id")
        record["id"] = obj["id"]
    fields = {k: v for k, v in obj.items() if k not in ("text", "id", "labels")}
    if fields:
        record["fields"] = fields
    if "labels" in obj:
        labels = obj["labels"]
        if not isinstance(labels, dict):
            raise TraitflowError(at, f"labels is a {_kind(labels)}, not an object",
                                 'write labels as {"name": true, "other": false}')
        for name, value in labels.items():
            if not isinstance(value, bool):
                raise TraitflowError(at, f"labels.{name} is {json.dumps(value)}, not true/false",
                                     f'write "{name}": true or "{name}": false (JSON booleans, unquoted)')
        record["labels"] = dict(labels)
    from .prompt_columns import check_field_names

    check_field_names(record, at)
    return record


def _check_ids(records, where, label):
    seen = {}
    for i, r in enumerate(records):
        if "id" not in r:
            continue
        if r["id"] in seen:
            raise TraitflowError(where(i), f"id {json.dumps(r['id'])} repeats the id of {label(seen[r['id']])}",
                                 "give every prompt its own id")
        seen[r["id"]] = i


def invisible_only(text):
    """True when text has nothing but whitespace, zero-width/format characters (U+200B, U+FEFF, ...) and
    control characters (U+0000, ...)."""
    return all(ch.isspace() or unicodedata.category(ch) in ("Cf", "Cc") for ch in text)


def check_prompts(prompts, where, locate=None, label=None):
    """Reject empty and blank prompts; warn (once, on stderr) about duplicates.

    where is a file (entries are its lines, numbered from 1) or "config prompts"
    (entries are list items); locate(i) and label(i), when given, name entry i with
    and without the file (a JSON set's prompts[i]); prompt i is always written to prompt_{i}.
    """
    in_file = where != "config prompts"
    if locate is None:
        locate = (lambda i: f"{where}:{i + 1}") if in_file else (lambda i: f"{where}[{i}]")
    if label is None:
        label = (lambda i: f"line {i + 1}") if in_file else (lambda i: f"entry {i}")
    if not prompts:
        if where.endswith(".json"):
            raise TraitflowError(where, 'no prompts ("prompts" is an empty list)',
                                 'add at least one prompt to "prompts"')
        raise TraitflowError(where, "no prompts (the file is empty)" if in_file else "no prompts (an empty list)",
                             "add at least one prompt, one per line" if in_file
                             else "list at least one prompt, or set prompts to null to read prompts_file")
    fix = ("remove the empty entry from prompts" if not in_file else "give it a text, or remove that prompt"
           if where.endswith(".json") else "delete that line (every line is one prompt)")
    for n, p in enumerate(prompts):
        if not p:
            raise TraitflowError(locate(n), "blank prompt", fix)
        if not p.strip():
            raise TraitflowError(locate(n), "whitespace-only prompt", fix)
        if invisible_only(p):
            raise TraitflowError(locate(n), "prompt has only whitespace and invisible characters "
                                 f"({', '.join(sorted({f'U+{ord(c):04X}' for c in p if not c.isspace()}))})", fix)
    seen = {}
    for i, p in enumerate(prompts):
        if p in seen:
            first = seen[p]
            print(f"traitflow warning: {where}: {label(i)} duplicates {label(first)} "
                  f"(both are kept, as prompt_{first} and prompt_{i})",
                  file=sys.stderr)
        seen.setdefault(p, i)
    return list(prompts)

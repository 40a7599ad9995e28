"""Reading the shared inference prompts: one prompt per line, strictly UTF-8."""

import json
import os
import sys

from .errors import TraitflowError


def read_lines(path, what="file"):
    """The lines of a UTF-8 text file (a final newline ends the last line, it adds no empty one)."""
    if not os.path.exists(path):
        raise TraitflowError(path, f"{what} not found",
                             "create it with one entry per line, or point the config at the right file")
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        text = raw.decode("utf-8-sig")  # a BOM from a Windows editor is not part of the first prompt
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise TraitflowError(f"{path}:{line}", f"not valid UTF-8 (byte {raw[err.start]:#04x} at offset {err.start})",
                             "re-save the file as UTF-8") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def read_prompts(path):
    """Prompts from a .txt file (one per line) or a .jsonl file ({"text": ...} per line)."""
    lines = read_lines(path, "prompts file")
    if path.endswith(".jsonl"):
        lines = [_jsonl_text(path, n, line) for n, line in enumerate(lines, 1)]
    return check_prompts(lines, path)


def _jsonl_text(path, n, line):
    try:
        text = json.loads(line)["text"]
    except (ValueError, KeyError, TypeError):
        raise TraitflowError(f"{path}:{n}", 'not a JSON object with a "text" field',
                             'write one {"text": "..."} object per line') from None
    if not isinstance(text, str):
        raise TraitflowError(f"{path}:{n}", f'"text" is a {type(text).__name__}, not a string',
                             'write one {"text": "..."} object per line')
    return text


def check_prompts(prompts, where):
    """Reject empty and blank prompts; warn (once, on stderr) about duplicates.

    where is a file (entries are its lines, numbered from 1) or "config prompts"
    (entries are list items); prompt i is always written to prompt_{i}.
    """
    in_file = where != "config prompts"
    if not prompts:
        raise TraitflowError(where, "no prompts (the file is empty)" if in_file else "no prompts",
                             "add at least one prompt, one per line")
    for n, p in enumerate(prompts, 1):
        at = f"{where}:{n}" if in_file else f"{where}[{n - 1}]"
        if p.strip() and p.endswith("\r"):
            raise TraitflowError(at, "Windows line ending (\\r)", "save the file with Unix (LF) line endings")
        if not p.strip():
            raise TraitflowError(at, "blank prompt" if not p else "whitespace-only prompt",
                                 "delete that line (every line is one prompt)" if in_file
                                 else "remove the empty entry from prompts")
    seen = {}
    for i, p in enumerate(prompts):
        if p in seen:
            first = seen[p]
            lines = f"line {i + 1} duplicates line {first + 1}" if in_file else f"entry {i} duplicates entry {first}"
            print(f"traitflow warning: {where}: {lines} (both are kept, as prompt_{first} and prompt_{i})",
                  file=sys.stderr)
        seen.setdefault(p, i)
    return list(prompts)

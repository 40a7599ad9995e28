"""Reading the shared inference prompts: one prompt per line, strictly UTF-8."""

import json
import os
import sys

from .errors import TraitflowError


def read_prompts(path):
    """Prompts from a .txt file (one per line) or a .jsonl file ({"text": ...} per line)."""
    if not os.path.exists(path):
        raise TraitflowError(path, "prompts file not found",
                             "create it with one prompt per line, or set prompts_file / prompts in the config")
    raw = open(path, "rb").read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise TraitflowError(f"{path}:{line}", f"not valid UTF-8 (byte {raw[err.start]:#04x})",
                             "re-save the file as UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it is not an empty prompt
    if path.endswith(".jsonl"):
        lines = [_jsonl_text(path, n, line) for n, line in enumerate(lines, 1)]
    return check_prompts(lines, path)


def _jsonl_text(path, n, line):
    try:
        return json.loads(line)["text"]
    except (ValueError, KeyError, TypeError):
        raise TraitflowError(f"{path}:{n}", 'not a JSON object with a "text" field',
                             'write one {"text": "..."} object per line') from None


def check_prompts(prompts, where):
    """Reject empty and blank prompts; warn (once, on stderr) about duplicates."""
    if not prompts:
        raise TraitflowError(where, "no prompts", "add at least one prompt, one per line")
    for n, p in enumerate(prompts, 1):
        if not isinstance(p, str) or not p.strip():
            raise TraitflowError(f"{where}:{n}", "blank prompt",
                                 "delete the blank line (every line is one prompt)")
        if p.strip() != p and "\r" in p:
            raise TraitflowError(f"{where}:{n}", "Windows line ending (\\r)", "save the file with Unix line endings")
    seen = {}
    for n, p in enumerate(prompts):
        if p in seen:
            print(f"traitflow warning: {where}: prompt {n} duplicates prompt {seen[p]} "
                  "(both are kept)", file=sys.stderr)
        seen.setdefault(p, n)
    return list(prompts)

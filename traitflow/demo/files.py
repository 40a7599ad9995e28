"""Build records of model folders made here: which files, their sizes and hashes, and how to rebuild them.

A folder written by a traitflow build (the shipped demo chat model,
`make demo-model`) carries traitflow_build.json. Any model folder that has one
is checked against it before a model loads: a missing or damaged weight file
is one line naming the file and the command that rebuilds it, instead of a
safetensors traceback. Folders without a record (every Hub model) are not
touched, so nothing here depends on which model it is.
"""

import hashlib
import json
import os

from ..core.errors import TraitflowError

RECORD = "traitflow_build.json"
CHECKED = ("model.safetensors", "tokenizer.json", "config.json")


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_build_record(folder, record):
    files = {name: {"bytes": os.path.getsize(os.path.join(folder, name)), "sha256": _sha256(os.path.join(folder, name))}
             for name in CHECKED}
    tmp = os.path.join(folder, RECORD + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({**record, "files": files}, fh, indent=1, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, os.path.join(folder, RECORD))


def read_build_record(folder):
    path = os.path.join(folder or "", RECORD)
    if not folder or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            record = json.load(fh)
    except ValueError:
        raise TraitflowError(path, "not valid JSON", "restore it from git (`git checkout -- FILE`)") from None
    return record


def check_build_record(folder, thorough=True):
    """Raise a one-line TraitflowError when a file the record lists is missing or differs from it.

    thorough=False checks presence only (the plan: a step that never loads the model, such as
    rescoring dynamics, must not need the weights to be intact); load_model checks sizes and hashes.
    """
    record = read_build_record(folder)
    if record is None:
        return
    rebuild = record.get("rebuild", "the command that built it")
    fix = f"run `{rebuild}` to rebuild it (or restore the folder from git)"
    for name, want in sorted(record.get("files", {}).items()):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise TraitflowError(path, "missing", fix)
        if not thorough:
            continue
        size = os.path.getsize(path)
        if size != want["bytes"]:
            raise TraitflowError(path, f"damaged ({size} bytes, the build wrote {want['bytes']})", fix)
        if _sha256(path) != want["sha256"]:
            raise TraitflowError(path, "damaged (its sha256 differs from the build's)", fix)

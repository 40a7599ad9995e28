"""Low-level file I/O every writer and reader shares: atomic writes, JSON text, safe .pt/.json loads.

One module below formats.py and shared.py so that both import it at top level
(no circle). torch is imported where a function needs it, so that the Snakefile
and torch-free scripts can use the writers at no start-up cost.
"""

import json
import os
import tempfile
from datetime import datetime, timezone

from .damage import damaged, describe, is_output, reports_damage, unwritable
from .errors import TraitflowError


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write(path, write):
    """Write through write(tmp_path) then rename, so a crash never leaves a half file.

    The temporary name is hidden (.NAME.XXXX.tmp: no rule's output, no glob's
    `*`); one left by a SIGKILL is removed by remove_stale_temps when the job
    that owns NAME runs again. A full disk or a read-only folder is one line
    naming the file and the fix (traitflow.core.damage.unwritable), never a bare
    "[Errno 28] No space left on device" without a path.
    """
    directory = os.path.dirname(path) or "."
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
        os.close(fd)
        # mkstemp creates 0600; give the file the mode open() would (shared clusters read results).
        os.chmod(tmp, 0o666 & ~_UMASK)
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        problem = unwritable(path, err) if isinstance(err, Exception) else None
        if problem is not None:
            raise problem from None
        raise


def remove_stale_temps(paths):
    """Delete the temporaries atomic_write left for these outputs when a job was killed.

    Called before a job writes (Snakemake's lock means no other writer of them is
    running); one directory listing per folder, however many outputs it holds.
    """
    by_dir = {}
    for path in paths:
        by_dir.setdefault(os.path.dirname(path) or ".", set()).add(os.path.basename(path))
    for directory, names in by_dir.items():
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                target = entry.name[1:-len(".tmp")].rpartition(".")[0]  # .NAME.XXXX.tmp -> NAME
                if target in names:
                    os.unlink(entry.path)


def save_pt(obj, path):
    import torch

    atomic_write(path, lambda tmp: torch.save(obj, tmp))


# Prompts and tokens can hold HTML. Escaped like this, a JSON file stays inert even
# when a page inlines it in a <script> block; JSON.parse and json.load read it back unchanged.
_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def json_text(obj, indent=None):
    """JSON with every non-ASCII character and every <, > and & written as a \\u escape.

    Those three characters can only occur inside JSON strings, so replacing them
    in the text never touches the structure.
    """
    text = json.dumps(obj, indent=indent, ensure_ascii=True)
    for char, escape in _HTML_ESCAPES.items():
        text = text.replace(char, escape)
    return text


def save_json(obj, path, indent=None):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json_text(obj, indent))
    atomic_write(path, write)


def load_pt(path):
    """Load a .pt without executing pickled code (a .pt from elsewhere is a pickle)."""
    import torch

    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise TraitflowError(path, "file not found") from None
    except Exception as err:  # torch raises UnpicklingError and others for unsafe or broken files
        if is_output(path):  # written by the workflow: truncated or overwritten, so rebuild it
            raise damaged(path, f"not a readable .pt file ({describe(err)})") from None
        raise TraitflowError(path, f"refused to load: not a plain tensor file ({type(err).__name__})",
                             "re-save it with torch.save of tensors, dicts and lists only, or use .safetensors") from None


@reports_damage("JSON file")
def load_json(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")

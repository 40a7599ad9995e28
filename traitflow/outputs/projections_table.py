"""The projections table: every trait's projection and cosine at every token, layer and point, as Parquet.

experiments/{exp}/tables/projections/ is a hive-partitioned Parquet dataset,
one partition per trait (trait=NAME/part-0.parquet, written by one job per
trait, so a changed trait rebuilds only its own part). One row per (trait,
prompt, token); columns:

    category       string  the trait's category (CATEGORY of CATEGORY/TRAIT; null for a trait without one)
    prompt_set     string  the prompt set ("default": inference_prompts.txt; else inference/prompts/{set}.txt)
    prompt_index   int32   the prompt's index in its set
    prompt_id, {field}, label_{name}   the prompt's id, extra fields and labels, where the
                           experiment's prompts have them (traitflow.experiment.prompt_columns)
    token_index    int32   counts prompt + response tokens from the first prompt token
                           (the dynamics' convention)
    token          string  the token's text
    token_id       int32   its id
    segment        string  "prompt" or "response"
    at_position    bool    true on the tokens the trait's vector was read at (vector.position: the
                           prompt's last token for prompt_last, its response tokens for response, ...;
                           special tokens never), so a prompt's score at that position is the mean
                           of proj_L{l}_{point} over its rows where it is true. A vector that records
                           no position is scored over its response tokens.
    proj_L{l}_{point}  float32  h . v / ||v|| at layer l and point (residual_in,
                           after_attn, residual_out), layer-major: L x 3 columns
    cos_L{l}_{point}   float32  the cosine h . v / (||h|| ||v||) = projection / ||h||
                           (0 where ||h|| = 0), same order
    trait          the partition column (in the folder name, not in the files; a
                           CATEGORY/TRAIT name is URI-encoded there, trait=CATEGORY%2FTRAIT,
                           and every reader decodes it)

Rows are sorted by prompt_set (in the plan's order), prompt_index, then token_index. Wide columns keep one row
per token (26 layers: 156 float columns) so the table stays small and fast to
write, while pandas (`pd.read_parquet(dir)`), pyarrow
(`pyarrow.dataset.dataset(dir, partitioning="hive")`) and DuckDB
(`read_parquet('dir/**/*.parquet', hive_partitioning = true)`) each read the
whole dataset in one call, the trait coming back from the folder names.

numpy and pyarrow only at import; reading a capture's .pt imports torch
(traitflow.core.formats.load_pt), the shared residual norms need safetensors.
"""

import os

import numpy as np

from ..core.constants import SUBLAYERS
from ..core.damage import reports_damage
from ..core.errors import TraitflowError

PART = "part-0.parquet"
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 1  # zstd's fastest level: float data barely compresses further at higher levels


def partition_value(trait):
    """The trait as a hive partition folder value: URI-encoded, so CATEGORY/TRAIT stays one folder.

    trait=style%2Fformal: pyarrow, pandas and DuckDB decode it back to 'style/formal'.
    """
    from urllib.parse import quote

    return quote(trait, safe="")


def partition_dir(table_dir, trait):
    return os.path.join(table_dir, f"trait={partition_value(trait)}")


def partition_path(table_dir, trait):
    return os.path.join(partition_dir(table_dir, trait), PART)


def value_columns(kind, n_layers):
    """['{kind}_L0_residual_in', '{kind}_L0_after_attn', ..., '{kind}_L{n-1}_residual_out']."""
    return [f"{kind}_L{l}_{point}" for l in range(n_layers) for point in SUBLAYERS]


def cosine(projections, norms):
    """projection / ||h|| in float32, 0 where the norm is 0."""
    projections = np.asarray(projections, dtype=np.float32)
    norms = np.asarray(norms, dtype=np.float32)
    return np.divide(projections, norms, out=np.zeros_like(projections), where=norms > 0)


def build_table(prompts, category=None, prompt_columns=None, position=None, special_ids=()):
    """A pyarrow Table from one trait's prompts.

    prompts: iterable of dicts with prompt_set, prompt_index, tokens (strings,
    prompt then response), token_ids, n_prompt, projections [T, L, 3] and norms
    [T, L, 3] (the shared residual norms), in set order; sorted here by
    prompt_index within each set. Every prompt must have the same L.
    prompt_columns: {column: [value per prompt, in the order given]} (prompt_id,
    fields, labels: traitflow.experiment.prompt_columns), placed after prompt_index.
    position: the trait's vector position: adds at_position (tokens in special_ids never count).
    """
    import pyarrow as pa

    from ..experiment.examples import position_mask
    from ..experiment.prompt_columns import arrow_columns

    prompts = list(prompts)
    prompt_columns = prompt_columns or {}
    for k, p in enumerate(prompts):  # each prompt keeps its own values through the sort
        p["columns"] = {name: values[k] for name, values in prompt_columns.items()}
    set_order = list(dict.fromkeys(p["prompt_set"] for p in prompts))
    prompts.sort(key=lambda p: (set_order.index(p["prompt_set"]), p["prompt_index"]))
    if not prompts:
        raise TraitflowError("projections table", "no prompts to tabulate")
    n_layers = np.asarray(prompts[0]["projections"]).shape[1]
    lengths = [len(p["tokens"]) for p in prompts]
    rows = sum(lengths)
    # Value-major buffers: each column is one contiguous row of these, handed to Arrow without a copy.
    proj = np.empty((n_layers * 3, rows), dtype=np.float32)
    cos = np.empty((n_layers * 3, rows), dtype=np.float32)
    prompt_index = np.empty(rows, dtype=np.int32)
    token_index = np.empty(rows, dtype=np.int32)
    response = np.empty(rows, dtype=bool)
    token_ids = np.empty(rows, dtype=np.int32)
    at_position = np.zeros(rows, dtype=bool)
    tokens, sets = [], []
    r = 0
    for p, n in zip(prompts, lengths):
        pr = np.asarray(p["projections"], dtype=np.float32)
        norms = np.asarray(p["norms"], dtype=np.float32)
        if pr.shape != (n, n_layers, 3) or norms.shape != pr.shape:
            raise TraitflowError(f"prompt {p['prompt_index']}",
                                 f"projections {pr.shape} and norms {norms.shape} do not match "
                                 f"{n} tokens x {n_layers} layers x 3 points", "rerun its capture")
        proj[:, r:r + n] = pr.reshape(n, -1).T
        cos[:, r:r + n] = cosine(pr, norms).reshape(n, -1).T
        prompt_index[r:r + n] = p["prompt_index"]
        token_index[r:r + n] = np.arange(n)
        response[r:r + n] = np.arange(n) >= p["n_prompt"]
        token_ids[r:r + n] = p["token_ids"]
        if position is not None:
            at_position[r:r + n] = position_mask(position, p["n_prompt"], list(p["token_ids"]), special_ids)
        tokens.extend(p["tokens"])
        sets.extend([p["prompt_set"]] * n)
        r += n
    columns = {
        "category": pa.array([category] * rows, type=pa.string()),
        "prompt_set": pa.array(sets, type=pa.string()),
        "prompt_index": pa.array(prompt_index),
        **arrow_columns({name: [p["columns"][name] for p in prompts] for name in prompt_columns}, lengths),
        "token_index": pa.array(token_index),
        "token": pa.array(tokens, type=pa.string()),
        "token_id": pa.array(token_ids),
        "segment": pa.array(np.where(response, "response", "prompt"), type=pa.string()),
        **({"at_position": pa.array(at_position)} if position is not None else {}),
    }
    for kind, values in (("proj", proj), ("cos", cos)):
        columns.update({name: pa.array(values[k]) for k, name in enumerate(value_columns(kind, n_layers))})
    return pa.table(columns)


def write_table(table, path, compression=COMPRESSION, level=COMPRESSION_LEVEL):
    """Write atomically (a killed job leaves no half file; the hidden temporary is ignored by readers).

    Only the key columns are dictionary-encoded. A float column never fits a
    dictionary, but pyarrow's default tries one per column and keeps its page:
    1.5x the raw values and a 5x slower write (benchmarks/projections_table.py
    --compare; BYTE_STREAM_SPLIT gained under 1% on top, so plain encoding
    keeps every Parquet reader able to read the table).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..core.formats import atomic_write

    keys = [f.name for f in table.schema if not pa.types.is_floating(f.type)]
    options = {"compression": compression, "compression_level": level if compression == "zstd" else None,
               "use_dictionary": keys}
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, **options))


@reports_damage("traitflow shared file")
def read_norms(shared_path):
    """The residual norms [T, L, 3] and token ids of a shared per-prompt file, without its attention."""
    from safetensors import safe_open

    try:
        with safe_open(shared_path, framework="numpy") as fh:
            return fh.get_tensor("residual_norms"), fh.get_tensor("token_ids")
    except FileNotFoundError:
        raise TraitflowError(shared_path, "shared file not found", "rerun the capture of its prompt") from None


def read_prompt(path, prompt_index, prompt_set="default"):
    """One (trait, prompt) all-layers .pt and its shared residual norms, as build_table wants them."""
    from ..core.formats import load_pt, shared_file_of

    rec = load_pt(path)
    norms, shared_ids = read_norms(shared_file_of(path, rec))
    token_ids = rec["prompt"]["token_ids"] + rec["response"]["token_ids"]
    if list(shared_ids) != token_ids:
        raise TraitflowError(path, "tokens differ from its shared file", "rerun its capture (--forcerun)")
    projections = np.concatenate([rec["projections"]["prompt"].numpy(), rec["projections"]["response"].numpy()])
    return {"prompt_set": prompt_set, "prompt_index": prompt_index, "tokens": rec["prompt"]["tokens"] + rec["response"]["tokens"],
            "token_ids": token_ids, "n_prompt": rec["prompt"]["n_tokens"], "projections": projections,
            "norms": norms}


def build_partition(captures, out_path, category=None, prompt_columns=None, position=None, special_ids=()):
    """Tabulate one trait: captures is [(prompt_set, prompt_index, all-layers .pt path)], prompt_columns
    {column: [value per capture]}, position and special_ids as build_table's; returns the table written."""
    table = build_table((read_prompt(path, i, prompt_set) for prompt_set, i, path in captures), category,
                        prompt_columns, position, special_ids)
    write_table(table, out_path)
    return table


def read_projections(table_dir, **kwargs):
    """The whole dataset as a pandas DataFrame (pd.read_parquet does the same; kwargs go to it)."""
    import pandas as pd

    return pd.read_parquet(table_dir, **kwargs)

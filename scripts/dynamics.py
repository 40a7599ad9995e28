"""Dynamics for one trait over one prompt shard: per-token scores at one layer and point, and their metrics.

Scores of the trait's own method come from its all-layers capture (no model);
any other method costs one teacher-forced pass for the whole shard.
"""

import logging

from traitflow.scripting import run_script


def captured_scores(paths, responses, layer, point):
    """[tokens] scores at (layer, point) from each all-layers .pt, checked against the shared response."""
    import torch

    from traitflow.errors import TraitflowError
    from traitflow.formats import load_pt

    scores = []
    for path, resp in zip(paths, responses):
        rec = load_pt(path)
        if rec["prompt"]["token_ids"] + rec["response"]["token_ids"] != resp["prompt"]["token_ids"] + resp["response"]["token_ids"]:
            raise TraitflowError(path, "tokens differ from the shared response", "rerun its capture (--forcerun)")
        proj = torch.cat([rec["projections"]["prompt"], rec["projections"]["response"]])  # [tokens, layers, 3]
        scores.append(proj[:, layer, point].numpy())
    return scores


def forward_scores(smk, methods, responses, layer, point):
    """{method: [[tokens] per prompt]} from one teacher-forced pass over the shard."""
    import torch

    from traitflow.capture import capture
    from traitflow.modeling import load_model
    from traitflow.vectors import check_vector_model, load_vector

    p = smk.params
    model = load_model(p.model_path, smk.config["capture"]["device"], p.dtype, eager=False)
    for m in methods:
        check_vector_model(m["vector"], p.model, p.allow_model_mismatch)
    vectors = torch.stack([load_vector(m["vector"], model.config.hidden_size) for m in methods])  # [methods, d]
    sequences = [r["prompt"]["token_ids"] + r["response"]["token_ids"] for r in responses]
    captures = capture(model, sequences, vectors, batch_size=smk.config["capture"]["batch_size"], attention=False)
    logging.info("teacher-forced pass: %d sequences, methods %s", len(sequences), [m["method"] for m in methods])
    return {m["method"]: [c.projections[:, layer, point, j].numpy() for c in captures] for j, m in enumerate(methods)}


def main(smk):
    from traitflow import SUBLAYERS, __version__
    from traitflow.dynamics import dynamics_record
    from traitflow.formats import load_json, now, save_json
    from traitflow.modeling import resolve_device, resolve_dtype

    p = smk.params
    point = SUBLAYERS.index(p.point)
    responses = [load_json(path) for path in p.responses]
    scores = {}  # method -> [[tokens] per prompt]
    for m in p.methods:
        if m["reuse"]:  # the trait's own method: its all-layers capture holds these numbers
            scores[m["method"]] = captured_scores(p.captures, responses, p.layer, point)
    extra = [m for m in p.methods if not m["reuse"]]
    if extra:
        scores.update(forward_scores(smk, extra, responses, p.layer, point))
    sources = {m["method"]: {"vector": m["vector"],
                             "source": "all-layers capture" if m["reuse"] else "teacher-forced pass"}
               for m in p.methods}
    settings = {"commitment_threshold": p.commitment_threshold, "persistence_fraction": p.persistence_fraction}
    dtype = resolve_dtype(p.dtype, resolve_device(smk.config["capture"]["device"]))
    for k, resp in enumerate(responses):
        meta = {"methods": sources, "vector_layer": p.vector["layer"], "model": p.model,
                "dtype": str(dtype).removeprefix("torch."), "response_source": p.responses[k],
                "traitflow_version": __version__, "created": now()}
        if p.captures:
            meta["all_layers_source"] = p.captures[k]
        record = dynamics_record(p.trait, resp, p.layer, p.point, p.span,
                                 {m["method"]: scores[m["method"]][k] for m in p.methods}, settings, meta)
        save_json(record, smk.output.files[k])
        logging.info("%s: %d tokens", smk.output.files[k], len(record["tokens"]))


run_script(snakemake, main)  # noqa: F821

"""Dynamics for one prompt shard and every trait: per-token scores at one layer and point, and their metrics.

No model: the trait's own method's scores are its all-layers projections, and
every other method's were made by the capture pass (the record's method_scores).
"""

import logging

from traitflow.outputs.scripting import job_outputs, run_script


def trait_scores(record, plan, point):
    """{method: [tokens]} for one (trait, prompt) all-layers record."""
    import torch

    proj = torch.cat([record["projections"]["prompt"], record["projections"]["response"]])  # [tokens, layers, 3]
    return {m["method"]: (proj[:, plan["layer"], point] if m["reuse"] else record["method_scores"][m["method"]]).numpy()
            for m in plan["methods"]}


def main(smk):
    from traitflow import SUBLAYERS, __version__
    from traitflow.outputs.dynamics import dynamics_record
    from traitflow.core.errors import TraitflowError
    from traitflow.core.formats import load_json, load_pt, now, save_json

    p = smk.params
    point = SUBLAYERS.index(p.point)
    responses = [load_json(path) for path in p.responses]
    outputs = iter(job_outputs(smk).files)  # trait-major, like the captures (rules/dynamics.smk)
    for trait, captures in p.captures.items():
        plan = p.plan[trait]
        sources = {m["method"]: {"vector": m["vector"],
                                 "source": "all-layers projections" if m["reuse"] else "capture pass (method_scores)"}
                   for m in plan["methods"]}
        for resp, capture_path in zip(responses, captures):
            record = load_pt(capture_path)
            if record["prompt"]["token_ids"] + record["response"]["token_ids"] != \
                    resp["prompt"]["token_ids"] + resp["response"]["token_ids"]:
                raise TraitflowError(capture_path, "tokens differ from the shared response", "rerun its capture (--forcerun)")
            meta = {"methods": sources, "vector_layer": plan["vector_layer"], "model": record["metadata"]["model"],
                    "dtype": record["metadata"]["dtype"], "response_source": record["metadata"]["response_source"],
                    "all_layers_source": capture_path, "traitflow_version": __version__, "created": now()}
            out = next(outputs)
            save_json(dynamics_record(trait, resp, plan["layer"], p.point, p.span, trait_scores(record, plan, point),
                                      p.settings, meta), out)
            logging.info("%s: %d tokens", out, len(resp["prompt"]["token_ids"]) + len(resp["response"]["token_ids"]))


run_script(snakemake, main)  # noqa: F821

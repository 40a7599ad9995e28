"""All-layers capture for one prompt shard and every trait: one teacher-forced pass per batch.

Writes the shared per-prompt file (residual norms, attention, logit lens) once,
then each trait's small file (projections + metadata naming the shared file).
"""

import logging
import os

from traitflow.outputs.scripting import job_outputs, run_script


def load_vectors(traits, d_model):
    """[n, d] stacked vectors and, per trait, the row of its own vector and of each other method's."""
    import torch

    from traitflow.experiment.vectors import load_vector

    paths, rows = [], []
    for t in traits:
        own = [t["vector"], *t["method_vectors"].values()]
        for path in own:
            if path not in paths:
                paths.append(path)
        rows.append({"own": paths.index(t["vector"]),
                     "methods": {m: paths.index(v) for m, v in t["method_vectors"].items()}})
    return torch.stack([load_vector(p, d_model) for p in paths]), rows


def main(smk):
    from traitflow import SUBLAYERS
    from traitflow.model.capture import capture
    from traitflow.core.formats import all_layers_json, all_layers_record, load_json, save_json, save_pt
    from traitflow.model.modeling import load_model, load_tokenizer, model_dtype
    from traitflow.core.shared import write_shared
    from traitflow.outputs.verify import check
    from traitflow.plan.workflow import model_config, settings_from_config

    p, out_files = smk.params, job_outputs(smk)
    # Vectors are loaded (and refused) before the model: a bad one costs no model load.
    vectors, rows = load_vectors(p.traits, model_config(settings_from_config(smk.config).model)["hidden_size"])
    model = load_model(p.model_path, p.device, p.dtype, eager=True)
    dtype = model_dtype(model)
    responses = [load_json(path) for path in p.responses]
    sequences = [r["prompt"]["token_ids"] + r["response"]["token_ids"] for r in responses]
    captures = capture(model, sequences, vectors, batch_size=smk.config["capture"]["batch_size"],
                       lens_top_k=p.logit_lens_top_k, lens_layers=p.logit_lens_layers,
                       token_budget=smk.config["capture"]["max_batch_tokens"],
                       labels=[f"prompt {i} ({path})" for i, path in zip(p.indices, p.responses)])
    tokenizer = load_tokenizer(p.model_path) if p.logit_lens_top_k else None
    point = SUBLAYERS.index(p.dynamics["point"]) if p.dynamics else None

    for k, (i, resp, cap) in enumerate(zip(p.indices, responses, captures)):
        shared = out_files.shared[k]
        lens = None
        if cap.lens_ids is not None:
            ids = sorted(set(cap.lens_ids.flatten().tolist()))
            lens = (cap.lens_ids.numpy(), cap.lens_probs.numpy(), dict(zip(ids, (tokenizer.decode([j]) for j in ids))),
                    cap.lens_layers)
        write_shared(shared, sequences[k], resp["prompt"]["n_tokens"], cap.norms.numpy(),
                     cap.attention_codes.numpy(), lens,
                     {"model": p.model, "dtype": dtype, "response_source": p.responses[k], "prompt_index": i})
        for n, (trait, row) in enumerate(zip(p.traits, rows)):
            out = n * len(p.indices) + k  # outputs are trait-major (rules/common.smk capture_outputs)
            path = out_files.pt[out]
            meta = {"trait": trait["name"], "trait_display_name": trait["name"].replace("_", " ").title(),
                    "vector_path": trait["vector"], "method": trait["method"], "vector_layer": trait["layer"],
                    "model": p.model, "dtype": dtype, "prompt_index": i,
                    "temperature": resp["settings"]["temperature"], "seed": resp["seed"],
                    "generation": resp["settings"], "response_source": p.responses[k],
                    "shared_file": os.path.relpath(shared, os.path.dirname(path))}
            method_scores = {m: cap.projections[:, p.dynamics["layers"][trait["name"]], point, j]
                             for m, j in row["methods"].items()}
            record = all_layers_record(resp, cap.projections[..., row["own"]], meta, method_scores)
            check(record, "all_layers", path)
            save_pt(record, path)
            if p.save_json:
                save_json(all_layers_json(record), out_files.json[out])
        logging.info("prompt %d: %d tokens, %d traits", i, len(sequences[k]), len(p.traits))


run_script(snakemake, main)  # noqa: F821

"""Layer internals for one prompt shard: one teacher-forced pass, every configured layer, no trait."""

import logging

from traitflow.outputs.scripting import job_outputs, run_script


def main(smk):
    from traitflow.core.formats import load_json, save_pt
    from traitflow.model.modeling import load_model, model_dtype
    from traitflow.model.single_layer import capture_internals, internals_record, model_dims
    from traitflow.outputs.verify import check

    p = smk.params
    model = load_model(p.model_path, p.device, p.dtype, eager=True)
    responses = [load_json(path) for path in p.responses]
    sequences = [r["prompt"]["token_ids"] + r["response"]["token_ids"] for r in responses]
    captured = capture_internals(model, sequences, p.layers, batch_size=smk.config["capture"]["batch_size"])
    dims = model_dims(model)
    metadata = {"model": p.model, "dtype": model_dtype(model)}
    outputs = iter(job_outputs(smk).files)
    for k, (resp, layers) in enumerate(zip(responses, captured)):
        meta = {**metadata, "temperature": resp["settings"]["temperature"], "seed": resp["seed"],
                "generation": resp["settings"], "response_source": p.responses[k]}
        for layer in p.layers:  # output order: prompt-major, then layer (rules/single_layer.smk)
            path = next(outputs)
            record = internals_record(resp, layers[layer], layer, dims, meta)
            check(record, "single_layer", path)
            save_pt(record, path)
            logging.info("%s: %d tokens", path, len(sequences[k]))


run_script(snakemake, main)  # noqa: F821

"""All-layers capture for one trait over one prompt shard: projections and attention."""

import logging

from traitflow.scripting import run_script


def main(smk):
    from traitflow.capture import capture
    from traitflow.formats import all_layers_record, load_json, save_json, save_pt, to_json
    from traitflow.modeling import load_model
    from traitflow.vectors import check_vector_model, load_vector
    from traitflow.verify import check
    from traitflow.workflow import model_config

    p = smk.params
    check_vector_model(smk.input.vector, p.model, p.allow_model_mismatch)
    vector = load_vector(smk.input.vector, model_config(smk.config)["hidden_size"])  # refused before a model loads
    model = load_model(p.model_path, smk.config["capture"]["device"], p.dtype, eager=True)
    responses = [load_json(path) for path in p.responses]
    sequences = [r["prompt"]["token_ids"] + r["response"]["token_ids"] for r in responses]
    captures = capture(model, sequences, vector[None], batch_size=smk.config["capture"]["batch_size"])
    metadata = {"trait": p.trait, "trait_display_name": p.trait.replace("_", " ").title(),
                "vector_path": smk.input.vector, "method": p.vector["method"], "vector_layer": p.vector["layer"],
                "model": p.model, "dtype": str(next(model.parameters()).dtype).removeprefix("torch.")}
    for k, (resp, cap) in enumerate(zip(responses, captures)):
        meta = {**metadata, "temperature": resp["settings"]["temperature"], "seed": resp["seed"],
                "generation": resp["settings"], "response_source": p.responses[k]}
        record = all_layers_record(resp, cap.projections[..., 0], cap.attention, meta)
        check(record, "all_layers", smk.output.pt[k])
        save_pt(record, smk.output.pt[k])
        if p.save_json:
            save_json(to_json(record), smk.output.json[k])
        logging.info("%s: %d tokens", smk.output.pt[k], len(sequences[k]))


run_script(snakemake, main)  # noqa: F821

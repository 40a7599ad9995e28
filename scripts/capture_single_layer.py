"""One trait's decomposition at each configured layer, for one prompt shard, from the shared internals."""

import logging
import os

from traitflow.scripting import run_script


def main(smk):
    from traitflow.formats import load_pt, save_json, save_pt, to_json
    from traitflow.modeling import load_model
    from traitflow.single_layer import decompose, trait_record
    from traitflow.vectors import check_vector_model, load_vector
    from traitflow.verify import check
    from traitflow.workflow import model_config

    p = smk.params
    check_vector_model(smk.input.vector, p.model, p.allow_model_mismatch)
    vector = load_vector(smk.input.vector, model_config(smk.config)["hidden_size"])  # refused before a model loads
    # Only the layer's weights are used (o_proj, down_proj, output norms): no forward pass.
    model = load_model(p.model_path, smk.config["capture"]["device"], p.dtype, eager=False)
    metadata = {"trait": p.trait, "trait_display_name": p.trait.replace("_", " ").title(),
                "vector_path": smk.input.vector, "method": p.vector["method"], "vector_layer": p.vector["layer"],
                "model": p.model}
    for k, internals_path in enumerate(p.internals):
        internals = load_pt(internals_path)
        decomposition, top = decompose(model, internals, vector, p.top_neurons)
        path = smk.output.pt[k]
        record = trait_record(internals, decomposition, top, metadata,
                              os.path.relpath(internals_path, os.path.dirname(path)))
        check(record, "single_layer", path)
        save_pt(record, path)
        if p.save_json:
            save_json(to_json(record), smk.output.json[k])
        logging.info("%s: layer %d", path, record["layer"])


run_script(snakemake, main)  # noqa: F821

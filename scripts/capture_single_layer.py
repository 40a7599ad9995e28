"""Every trait's decomposition at each configured layer, for one prompt shard, from the shared internals.

No model is loaded and nothing runs forward: the configured layers' weights are read
from the checkpoint files (traitflow.model.layer_weights.load_layers), on the CPU.
"""

import logging
import os
import resource
import time

from traitflow.outputs.scripting import job_outputs, run_script


def main(smk):
    from traitflow.core.formats import load_pt, save_json, save_pt, to_json
    from traitflow.model.decomposition import decompose_prepared, prepare_decomposition
    from traitflow.model.layer_weights import load_layers
    from traitflow.model.single_layer import trait_record
    from traitflow.experiment.vectors import check_vector_model, load_vector
    from traitflow.outputs.verify import check
    from traitflow.plan.workflow import model_config, settings_from_config

    start, p = time.time(), smk.params
    d_model = model_config(settings_from_config(smk.config).model)["hidden_size"]
    paths, vectors = dict(zip(p.traits, smk.input.vectors)), {}
    for trait, path in paths.items():  # all refused before any weight is read
        check_vector_model(path, p.model, p.allow_model_mismatch)
        vectors[trait] = load_vector(path, d_model)
    if not vectors:
        return
    # Output order (rules/common.smk single_layer_outputs): trait, then prompt, then layer,
    # the prompt-layer part in p.internals' order.
    n = len(p.internals)
    planned = vars(job_outputs(smk))
    outputs = {ext: {t: planned[ext][k * n:(k + 1) * n] for k, t in enumerate(p.traits)}
               for ext in ("pt", "json") if ext in planned}
    config = blocks = None
    for k, internals_path in enumerate(p.internals):
        internals = load_pt(internals_path)
        layer = internals["layer"]
        if blocks is None:  # the weights round like the forward pass that wrote the internals did
            config, blocks = load_layers(p.model_path, p.layers, internals["metadata"]["dtype"])
            logging.info("layers %s of %s read (%s) in %.2f s", p.layers, p.model_path,
                         internals["metadata"]["dtype"], time.time() - start)
        prepared = prepare_decomposition(blocks[layer], config, internals)  # what no trait changes, once
        for trait, vector in vectors.items():
            decomposition, top = decompose_prepared(prepared, vector, p.top_neurons)
            path = outputs["pt"][trait][k]
            metadata = {"trait": trait, "trait_display_name": trait.replace("_", " ").title(),
                        "vector_path": paths[trait], "method": p.vectors[trait]["method"],
                        "vector_layer": p.vectors[trait]["layer"], "model": p.model}
            record = trait_record(internals, decomposition, top, metadata,
                                  os.path.relpath(internals_path, os.path.dirname(path)))
            check(record, "single_layer", path)
            save_pt(record, path)
            if p.save_json:
                save_json(to_json(record), outputs["json"][trait][k])
        logging.info("%s: layer %d, %d traits", internals_path, layer, len(vectors))
    logging.info("done in %.2f s, peak RSS %.0f MB", time.time() - start,
                 resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


run_script(snakemake, main)  # noqa: F821

"""Steer one trait: every layer, direction, position, ratio and control in one model load, batched."""

import json
import logging

from traitflow.outputs.scripting import run_script


def main(smk):
    import torch

    from traitflow.core.formats import save_json
    from traitflow.model.generate import encode_prompt, stop_ids
    from traitflow.model.modeling import load_model, load_tokenizer, model_dtype
    from traitflow.steering.behaviour import make_classifier
    from traitflow.steering.run import run_trait

    p, gen, trait = smk.params, smk.params.generation, smk.wildcards.trait
    with open(smk.input.baseline, encoding="utf-8") as fh:
        baseline = json.load(fh)
    model = load_model(p.model_path, p.device, p.dtype, eager=False)
    tokenizer = load_tokenizer(p.model_path)
    units = {}
    for layer, path in p.vectors.items():
        v = torch.load(path, weights_only=True).float().flatten()
        units[int(layer)] = v / v.norm()
    template = gen["chat_template"]
    prompts = {q["key"]: {"id": q["id"], "text": q["text"], "ids": encode_prompt(tokenizer, q["text"], template)}
               for q in baseline["prompts"]}
    settings = {**p.settings, "prompts": p.prompts, "residual_norm": baseline["residual_norm"]}
    classify = make_classifier(p.behaviour, f"config steering.behaviour.{trait}") if p.behaviour else None
    batching = {"batch_size": smk.config["steering"]["batch_size"],  # speed only: not params
                "token_budget": smk.config["capture"]["max_batch_tokens"]}
    result = run_trait(model, lambda ids: tokenizer.decode(ids, skip_special_tokens=True), trait, units, settings,
                       prompts, {q["key"]: q["response_ids"] for q in baseline["prompts"]}, classify,
                       stop_ids(model, tokenizer), gen, batching)
    save_json({"trait": trait, "method": p.method, "vector_layer": p.vector_layer, "vectors": p.vectors,
               "model": p.model, "dtype": model_dtype(model), "device": p.device.split(":")[0], "generation": gen,
               "layer_convention": "layer L is the output of decoder layer L (residual_out)",
               "behaviour_classifier": p.behaviour, "prompts": {k: q["text"] for k, q in prompts.items()},
               **{k: p.settings[k] for k in ("control_seed",)}, **result}, smk.output[0], indent=1)
    logging.info("%s: %d conditions", trait, len(result["conditions"]))


run_script(snakemake, main)  # noqa: F821

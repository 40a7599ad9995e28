"""The unsteered responses of every steering prompt, their fluency, and each layer's mean residual norm."""

import logging

from traitflow.outputs.scripting import run_script


def main(smk):
    from traitflow.core.formats import save_json
    from traitflow.model.generate import encode_prompt, stop_ids
    from traitflow.model.modeling import load_model, load_tokenizer, model_dtype
    from traitflow.steering.run import run_baseline

    p, gen = smk.params, smk.params.generation
    model = load_model(p.model_path, p.device, p.dtype, eager=False)
    tokenizer = load_tokenizer(p.model_path)
    prompt_ids = [encode_prompt(tokenizer, q["text"], gen["chat_template"]) for q in p.prompts]
    batching = {"batch_size": smk.config["steering"]["batch_size"],  # speed only: not params
                "token_budget": smk.config["capture"]["max_batch_tokens"]}
    base = run_baseline(model, prompt_ids, stop_ids(model, tokenizer), gen, batching)
    prompts = [{"key": q["key"], "id": q["id"], "text": q["text"],
                "response": tokenizer.decode(r, skip_special_tokens=True), "response_ids": r, "nll": nll,
                "distinct2": d2}
               for q, r, nll, d2 in zip(p.prompts, base["responses"], base["nll"], base["distinct2"])]
    save_json({"model": p.model, "generation": gen, "dtype": model_dtype(model), "device": p.device.split(":")[0],
               "layer_convention": "layer L is the output of decoder layer L (residual_out)",
               "residual_norm": base["residual_norm"], "prompts": prompts}, smk.output[0], indent=1)
    logging.info("%d baseline responses; mean residual norm per layer %s", len(prompts),
                 [round(n, 2) for n in base["residual_norm"]])


run_script(snakemake, main)  # noqa: F821

"""Generate one shared response per prompt of a shard (batched, KV-cached, one random stream per prompt)."""

import logging

from traitflow.outputs.scripting import job_outputs, run_script


def main(smk):
    from traitflow.core.formats import response_record, save_json
    from traitflow.model.generate import check_context, encode_prompt, generate, stop_ids
    from traitflow.model.modeling import load_model, load_tokenizer, model_dtype

    p, gen = smk.params, smk.params.generation
    model = load_model(p.model_path, p.device, p.dtype, eager=False)
    tokenizer = load_tokenizer(p.model_path)
    prompt_ids = [encode_prompt(tokenizer, text, gen["chat_template"]) for text in p.prompts]
    check_context(prompt_ids, p.indices, gen["max_new_tokens"], model.config.max_position_embeddings)
    responses = generate(model, prompt_ids, stop_ids(model, tokenizer), gen["max_new_tokens"],
                         gen["temperature"], gen["top_p"], gen["seed"],
                         batch_size=smk.config["generation"]["batch_size"],  # speed only: not a param
                         token_budget=smk.config["capture"]["max_batch_tokens"],
                         labels=[f"prompt {i}" for i in p.indices])
    # What the numbers were computed with: the dtype, the device kind, and whether the chat template wrapped
    # the prompt (generation.chat_template: auto resolves to true or false at plan time).
    settings = {**gen, "dtype": model_dtype(model), "device": p.device.split(":")[0]}
    for index, text, ids, resp, path in zip(p.indices, p.prompts, prompt_ids, responses, job_outputs(smk).files):
        save_json(response_record(index, text, ids, resp, tokenizer, settings, p.model, p.prompt_set), path, indent=1)
        logging.info("prompt %d: %d prompt + %d response tokens", index, len(ids), len(resp))


run_script(snakemake, main)  # noqa: F821

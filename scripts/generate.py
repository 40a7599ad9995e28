"""Generate one shared response per prompt of a shard (batched, KV-cached, seeded)."""

import logging

from traitflow.scripting import run_script


def main(smk):
    from traitflow.formats import response_record, save_json
    from traitflow.generate import check_context, encode_prompt, generate, stop_ids
    from traitflow.modeling import load_model, load_tokenizer

    gen = smk.params.generation
    model = load_model(smk.params.model_path, smk.config["capture"]["device"], smk.params.dtype, eager=False)
    tokenizer = load_tokenizer(smk.params.model_path)
    prompt_ids = [encode_prompt(tokenizer, p, gen["chat_template"]) for p in smk.params.prompts]
    check_context(prompt_ids, smk.params.indices, gen["max_new_tokens"], model.config.max_position_embeddings)
    responses = generate(model, prompt_ids, stop_ids(model, tokenizer), gen["max_new_tokens"],
                         gen["temperature"], gen["top_p"], gen["seed"], gen["batch_size"],
                         seed_offsets=smk.params.indices)
    for index, text, ids, resp, path in zip(smk.params.indices, smk.params.prompts, prompt_ids, responses, smk.output.files):
        save_json(response_record(index, text, ids, resp, tokenizer, gen, smk.params.model), path, indent=1)
        logging.info("prompt %d: %d prompt + %d response tokens", index, len(ids), len(resp))


run_script(snakemake, main)  # noqa: F821

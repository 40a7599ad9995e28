"""The demo's core stages in ONE Python process, through the library: the workflow's yardstick.

Run in a fresh workdir (benchmarks/run.py makes one): builds the demo model,
extracts every trait's vectors, generates the shared responses, captures all
layers for every trait and writes the same files the rules write, with the
same settings (config.yaml). One import of torch/transformers, one model load
per stage kind; Snakemake pays those once per job instead.

usage: python one_process.py WORKDIR
"""

import os
import sys

import torch
import yaml

from traitflow.model import extract
from traitflow.model.capture import capture
from traitflow.demo.spec import build_demo_model
from traitflow.core.formats import all_layers_json, all_layers_record, response_record, save_json, save_pt
from traitflow.core.shared import write_shared
from traitflow.model.lens import plan_lens
from traitflow.model.generate import encode_prompt, generate, stop_ids
from traitflow.model.modeling import load_model, load_tokenizer
from traitflow.experiment.vectors import EXTRACTED_METHODS, load_vector, metadata_path, vector_filename
from traitflow.plan.workflow import make_plan


def extract_trait(model, tokenizer, trait_dir, trait, model_name):
    pos_texts = extract.read_examples(os.path.join(trait_dir, "extraction", "positive.txt"))
    neg_texts = extract.read_examples(os.path.join(trait_dir, "extraction", "negative.txt"))
    pos = extract.example_features(model, tokenizer, pos_texts)  # [n_pos, layers, d]
    neg = extract.example_features(model, tokenizer, neg_texts)
    for layer in range(pos.shape[1]):
        vectors = {"mean_diff": (extract.mean_diff(pos[:, layer], neg[:, layer]), None),
                   "probe": extract.probe(pos[:, layer], neg[:, layer])}
        for method in EXTRACTED_METHODS:
            vec, acc = vectors[method]
            path = os.path.join(trait_dir, "extraction", "vectors", vector_filename(method, layer))
            save_pt(vec.contiguous(), path)
            save_json({"trait": trait, "method": method, "layer": layer, "model": model_name,
                       "n_positive": len(pos_texts), "n_negative": len(neg_texts), "norm": float(vec.norm()),
                       "train_accuracy": acc, "features": "token-mean residual_out"}, metadata_path(path), indent=1)


def main(workdir):
    os.chdir(workdir)
    with open("config.yaml") as fh:
        config = yaml.safe_load(fh)
    plan = make_plan(config)
    gen, cap = config["generation"], config["capture"]
    if plan.model == "traitflow-demo":  # the random model is built; the demo's chat model is shipped
        build_demo_model(plan.model_path, config.get("demo_model"))
    tokenizer = load_tokenizer(plan.model_path)

    model = load_model(plan.model_path, cap["device"], cap["dtype"], eager=False)
    for t in plan.ok_traits:
        extract_trait(model, tokenizer, os.path.join(plan.exp_dir, t.name), t.name, plan.model)
    prompt_ids = [encode_prompt(tokenizer, p, gen["chat_template"]) for p in plan.prompts]
    responses = []
    for indices in plan.shards:
        ids = [prompt_ids[i] for i in indices]
        out = generate(model, ids, stop_ids(model, tokenizer), gen["max_new_tokens"], gen["temperature"],
                       gen["top_p"], gen["seed"], gen["batch_size"], seed_offsets=indices)
        for i, resp in zip(indices, out):
            record = response_record(i, plan.prompts[i], prompt_ids[i], resp, tokenizer, gen, plan.model)
            save_json(record, os.path.join(plan.exp_dir, "inference", "responses", f"prompt_{i}.json"), indent=1)
            responses.append(record)

    model = load_model(plan.model_path, cap["device"], cap["dtype"], eager=True)
    sequences = [r["prompt"]["token_ids"] + r["response"]["token_ids"] for r in responses]
    traits = plan.ok_traits
    vectors = torch.stack([load_vector(t.vector_path, model.config.hidden_size) for t in traits])
    top_k, layers = plan_lens(cap, plan.n_layers)
    for indices in plan.shards:  # one pass per shard projects every trait, as the capture jobs do
        captures = capture(model, [sequences[i] for i in indices], vectors, batch_size=cap["batch_size"],
                           lens_top_k=top_k, lens_layers=layers)
        for i, c in zip(indices, captures):
            lens = None
            if c.lens_ids is not None:
                ids = sorted(set(c.lens_ids.flatten().tolist()))
                lens = (c.lens_ids.numpy(), c.lens_probs.numpy(), dict(zip(ids, (tokenizer.decode([j]) for j in ids))),
                        c.lens_layers)
            shared = os.path.join(plan.exp_dir, "inference", "shared", f"prompt_{i}.safetensors")
            write_shared(shared, sequences[i], responses[i]["prompt"]["n_tokens"], c.norms.numpy(),
                         c.attention_codes.numpy(), lens, {"model": plan.model, "prompt_index": i})
            for n, t in enumerate(traits):
                path = os.path.join(plan.exp_dir, t.name, "inference", "residual_stream_activations",
                                    f"prompt_{i}.pt")
                meta = {"trait": t.name, "vector_path": t.vector_path, "method": t.method,
                        "vector_layer": t.layer, "model": plan.model, "seed": responses[i]["seed"],
                        "shared_file": os.path.relpath(shared, os.path.dirname(path))}
                record = all_layers_record(responses[i], c.projections[..., n], meta)
                save_pt(record, path)
                if cap["save_json"]:
                    save_json(all_layers_json(record), path[:-3] + ".json")

if __name__ == "__main__":
    main(sys.argv[1])

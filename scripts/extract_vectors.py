"""Extract mean_diff and probe vectors at every layer for one trait."""

import logging
import os

from traitflow.outputs.scripting import run_script


def main(smk):
    from traitflow.model import extract
    from traitflow.core.formats import save_json, save_pt
    from traitflow.model.modeling import load_model, load_tokenizer, model_dtype
    from traitflow.experiment.vectors import metadata_path

    pos_texts = extract.read_examples(smk.input.positive)
    neg_texts = extract.read_examples(smk.input.negative)
    model = load_model(smk.params.model_path, smk.params.device, smk.params.dtype, eager=False)
    tokenizer = load_tokenizer(smk.params.model_path)
    batching = {"batch_size": smk.config["capture"]["batch_size"],  # speed only: read from the config, not params
                "token_budget": smk.config["capture"]["max_batch_tokens"]}
    pos = extract.example_features(model, tokenizer, pos_texts, where=smk.input.positive, **batching)  # [n, layers, d]
    neg = extract.example_features(model, tokenizer, neg_texts, where=smk.input.negative, **batching)
    dtype = model_dtype(model)
    wanted = set(smk.output)
    for layer in range(pos.shape[1]):
        heldout, heldout_n = extract.heldout_accuracy(pos[:, layer], neg[:, layer])
        vectors = {"mean_diff": (extract.mean_diff(pos[:, layer], neg[:, layer]), None, {}),
                   "probe": (*extract.probe(pos[:, layer], neg[:, layer]),
                             {"heldout_accuracy": heldout, "heldout_n": heldout_n, "heldout": "5-fold cross-validation"})}
        for method, (vec, acc, quality) in vectors.items():
            path = next(p for p in wanted if p.endswith(f"/{method}_layer{layer}.pt"))
            save_pt(vec.contiguous(), path)
            save_json({"trait": smk.wildcards.trait, "method": method, "layer": layer,
                       "model": smk.params.model, "n_positive": len(pos_texts), "n_negative": len(neg_texts),
                       "norm": float(vec.norm()), "train_accuracy": acc, **quality,
                       "features": "token-mean residual_out, special tokens left out",
                       "dtype": dtype, "device": smk.params.device.split(":")[0]}, metadata_path(path), indent=1)
        logging.info("layer %d extracted", layer)
    # Extracted vectors are generated files: git ignores them, and not the vectors a user brings.
    gitignore = next(p for p in smk.output if p.endswith("/.gitignore"))
    names = sorted(os.path.basename(p) for p in smk.output if p != smk.output.manifest)  # vectors, metadata, this
    with open(gitignore, "w", encoding="utf-8") as fh:
        fh.write("# written by traitflow's extraction: these files are generated\n" + "\n".join(names) + "\n")


run_script(snakemake, main)  # noqa: F821

"""Extract mean_diff and probe vectors at every layer and position for one trait."""

import logging
import os

from traitflow.outputs.scripting import run_script


def main(smk):
    from traitflow.core.formats import save_json, save_pt
    from traitflow.experiment.examples import form_of, original_position, position_folder, read_examples
    from traitflow.experiment.vectors import metadata_path
    from traitflow.model import extract
    from traitflow.model.modeling import load_model, load_tokenizer, model_dtype

    p, trait = smk.params, smk.wildcards.trait
    examples = {side: read_examples(smk.input[side], side, trait) for side in ("positive", "negative")}
    model = load_model(p.model_path, p.device, p.dtype, eager=False)
    tokenizer = load_tokenizer(p.model_path)
    batching = {"batch_size": smk.config["capture"]["batch_size"],  # speed only: read from the config, not params
                "token_budget": smk.config["capture"]["max_batch_tokens"]}
    features = {side: extract.position_features(model, tokenizer, examples[side], p.positions, p.presentation,
                                                bool(p.chat_template), where=smk.input[side], **batching)
                for side in examples}  # {side: {position: [n, layers, d]}}
    reading = {"presentation": p.presentation, "examples_form": form_of(smk.input.positive),
               "chat_template": bool(p.chat_template),
               "features": "mean residual_out over the position's tokens, special tokens left out"}
    dtype = model_dtype(model)
    gitignore = next(f for f in smk.output if f.endswith("/.gitignore"))
    here = os.path.dirname(gitignore)  # the trait's vectors folder
    for position in p.positions:
        pos, neg = features["positive"][position], features["negative"][position]
        folder = os.path.join(here, position_folder(position))
        for layer in range(pos.shape[1]):
            heldout, heldout_n = extract.heldout_accuracy(pos[:, layer], neg[:, layer])
            vectors = {"mean_diff": (extract.mean_diff(pos[:, layer], neg[:, layer]), None, {}),
                       "probe": (*extract.probe(pos[:, layer], neg[:, layer]),
                                 {"heldout_accuracy": heldout, "heldout_n": heldout_n,
                                  "heldout": "5-fold cross-validation"})}
            for method, (vec, acc, quality) in vectors.items():
                path = os.path.join(folder, f"{method}_layer{layer}.pt")
                save_pt(vec.contiguous(), path)
                save_json({"trait": trait, "method": method, "layer": layer, "model": p.model,
                           "n_positive": len(pos), "n_negative": len(neg), "norm": float(vec.norm()),
                           "train_accuracy": acc, **quality, "position": position,
                           "original_position": original_position(position), **reading,
                           "dtype": dtype, "device": p.device.split(":")[0]}, metadata_path(path), indent=1)
        logging.info("%s: %d layers extracted", position, pos.shape[1])
    # Extracted vectors are generated files: git ignores them, and not the vectors a user brings.
    names = sorted(os.path.relpath(f, here) for f in smk.output if f != smk.output.manifest)  # vectors, metadata, this
    with open(gitignore, "w", encoding="utf-8") as fh:
        fh.write("# written by traitflow's extraction: these files are generated\n" + "\n".join(names) + "\n")


run_script(snakemake, main)  # noqa: F821

"""Held-out AUROC of extracted vectors per trait, presentation, position and layer, on a real chat model.

For each trait of an experiment: extract mean_diff and probe vectors from its extraction set (read
as its experiment reads it, vector.presentation, or all presentations with --all-presentations) at
each position and every layer, then rank the experiment's labelled evaluation set (a JSON prompt set, formatted as
generation formats prompts) by its projection at the same position and layer: AUROC of the prompts
labelled with the trait against the others. --baseline adds the demo's example sentences read raw
over all tokens (what an experiment copied from the demo gets). Prints one table per trait and method.

    .venv/bin/python benchmarks/extraction_positions.py --model resources/models/SmolLM2-... \
        --experiment experiments/smollm2 --baseline experiments/demo
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import yaml  # noqa: E402

from traitflow.experiment.examples import FITS, find_examples, presentation_of, read_examples  # noqa: E402
from traitflow.experiment.prompts import read_prompt_records  # noqa: E402
from traitflow.model.extract import mean_diff, position_features, probe  # noqa: E402
from traitflow.model.modeling import load_model, load_tokenizer  # noqa: E402

POSITIONS = ["all", "prompt_last"]  # what a prompt-only evaluation set can be scored at


def auroc(scores, positive):
    """P(a positive scores above a negative), ties counting half."""
    pos = scores[positive]
    neg = scores[~positive]
    return float(((pos[:, None] > neg[None]).double() + 0.5 * (pos[:, None] == neg[None]).double()).mean())


def readings(extraction, setting, baseline):
    """[(name, presentation, positions, {side: examples})] of one trait: its extraction set read as setting
    says (None: every presentation its form allows), and the baseline's examples read raw over all tokens."""
    form, files = find_examples(extraction)
    trait = os.path.basename(os.path.dirname(extraction))
    sides = {side: read_examples(path, side, trait) for side, path in files.items()}
    presentations = FITS[form] if setting is None else [presentation_of(setting, form, files["positive"])]
    out = [(f"{form} {p}", p, POSITIONS, sides) for p in presentations]
    base = os.path.join(baseline, trait, "extraction") if baseline else None
    if base and os.path.isdir(base):
        form, files = find_examples(base)
        out.append(("baseline sentences raw", "raw", ["all"],
                    {side: read_examples(path, side, trait) for side, path in files.items()}))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--eval", default="inference_prompts.json", help="labelled JSON prompt set, in the experiment")
    ap.add_argument("--baseline", help="an experiment whose trait examples are read raw, for comparison")
    ap.add_argument("--all-presentations", action="store_true", help="also read the examples every other way")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_model(args.model, "cpu", "float32"), load_tokenizer(args.model)
    records = read_prompt_records(os.path.join(args.experiment, args.eval))
    with open(os.path.join(args.experiment, "config.yaml"), encoding="utf-8") as fh:
        vector = yaml.safe_load(fh).get("vector") or {}
    setting = None if args.all_presentations else vector.get("presentation", "auto")
    evaluation = [{"prompt": r["text"], "response": None} for r in records]
    start = time.perf_counter()
    eval_features = position_features(model, tok, evaluation, POSITIONS, "chat", batch_size=32)
    traits = sorted(d for d in os.listdir(args.experiment)
                    if os.path.isdir(os.path.join(args.experiment, d, "extraction")))
    for trait in traits:
        labelled = [i for i, r in enumerate(records) if trait in r.get("labels", {})]
        positive = torch.tensor([records[i]["labels"][trait] for i in labelled])
        rows = {"mean_diff": [], "probe": []}
        for name, presentation, positions, sides in readings(os.path.join(args.experiment, trait, "extraction"),
                                                             setting, args.baseline):
            feats = {s: position_features(model, tok, ex, positions, presentation, batch_size=32)
                     for s, ex in sides.items()}
            for position in positions:
                pos, neg = feats["positive"][position], feats["negative"][position]
                scored = eval_features[position][labelled]  # [n, layers, d]
                for method in rows:
                    aucs = []
                    for layer in range(pos.shape[1]):
                        v = mean_diff(pos[:, layer], neg[:, layer]) if method == "mean_diff" else \
                            probe(pos[:, layer], neg[:, layer])[0]
                        aucs.append(auroc(scored[:, layer] @ (v / v.norm()), positive))
                    rows[method].append((f"{name} ({len(pos)}/{len(neg)}), {position}", aucs))
        for method, table in rows.items():
            layers = len(table[0][1])
            print(f"\n{trait}, {method}: held-out AUROC on {len(labelled)} evaluation prompts "
                  f"({int(positive.sum())} positive), per layer")
            print("| extraction set, position | " + " | ".join(f"L{l}" for l in range(layers)) + " |")
            print("|---|" + "---|" * layers)
            for label, aucs in table:
                print(f"| {label} | " + " | ".join(f"{a:.2f}" for a in aucs) + " |", flush=True)
    print(f"\n{time.perf_counter() - start:.0f} s on {args.threads} threads")


if __name__ == "__main__":
    main()

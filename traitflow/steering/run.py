"""A steering job's work, model loaded: the unsteered baselines, and one trait's conditions.

run_baseline: the unsteered (greedy by default) response of every steering prompt, its fluency, and
each layer's mean residual norm, from which every coefficient is scaled. Trait-independent: a new
vector, trait or ratio never regenerates it.
run_trait: every (layer, direction, position, ratio, control) of one trait in one batched, KV-cached
generation; each response measured by the unsteered model (read-back at the steered layer, NLL,
distinct-2) and by the trait's behaviour classifier.
"""

import hashlib
import math

import torch

from .generate import Row, steered_generate
from .metrics import distinct2, teacher_forced

SIGN = {"add": 1.0, "subtract": -1.0}


def run_baseline(model, prompt_ids, stop, gen, batching):
    """{"responses": [token ids per prompt], "nll", "distinct2", "residual_norm": [mean per layer]}."""
    responses = steered_generate(model, [Row(ids) for ids in prompt_ids], stop, gen["max_new_tokens"],
                                 gen["temperature"], gen["top_p"], gen["seed"], **batching)
    measured = teacher_forced(model, prompt_ids, responses, norms=True, **batching)
    n_layers = model.config.num_hidden_layers
    tokens = sum(m["norm_n"] for m in measured)
    norms = [sum(m["norm_sum"][l] for m in measured) / max(tokens, 1) for l in range(n_layers)]
    return {"responses": responses, "nll": [m["nll"] for m in measured],
            "distinct2": [distinct2(r) for r in responses], "residual_norm": norms}


def random_unit(d_model, seed, trait, layer):
    """The random control direction of a trait at a layer: seeded by (seed, trait, layer) only."""
    key = int.from_bytes(hashlib.sha256(f"{seed}:{trait}:{layer}".encode()).digest()[:8], "little") & (2**63 - 1)
    r = torch.randn(d_model, generator=torch.Generator().manual_seed(key))
    return r / r.norm()


def trait_conditions(s, layers, residual_norm):
    """Every condition of one trait: dicts of layer, direction, position, ratio, coefficient, control."""
    controls = ["vector", "random"] if s["random_control"] else ["vector"]
    out = []
    for layer in layers:
        norm = residual_norm[layer]
        for direction in s["directions"]:
            for position in s["positions"]:
                for ratio in sorted({r for r in s["ratios"] if r > 0}):  # ratio 0 is the baseline itself
                    out += [{"layer": layer, "direction": direction, "position": position, "ratio": ratio,
                             "coefficient": SIGN[direction] * ratio * norm, "residual_norm": norm,
                             "control": c} for c in controls]
        if s["ablate"]:
            out += [{"layer": layer, "direction": "ablate", "position": position, "ratio": math.nan,
                     "coefficient": math.nan, "residual_norm": norm, "control": c}
                    for position in s["positions"] for c in controls]
    return out


def run_trait(model, decode, trait, units, s, prompts, baseline, classify, stop, gen, batching):
    """One trait's steering record: its conditions (each with one response per prompt) and its baselines.

    decode: token ids -> text; units: {layer: unit vector}; prompts: {key: {"id", "text", "ids"}};
    baseline: {key: response ids};
    s: the trait's settings (ratios, directions, positions, random_control, control_seed, ablate,
    prompts: {direction: [keys]}).
    """
    d_model = model.config.hidden_size
    randoms = {l: random_unit(d_model, s["control_seed"], trait, l) for l in units}
    conditions = trait_conditions(s, sorted(units), s["residual_norm"])
    rows, owners = [], []
    for c, cond in enumerate(conditions):
        unit = (units if cond["control"] == "vector" else randoms)[cond["layer"]]
        for key in s["prompts"][cond["direction"]]:
            ids = prompts[key]["ids"]
            if cond["direction"] == "ablate":
                rows.append(Row(ids, ablate=unit, position=cond["position"]))
            else:
                rows.append(Row(ids, cond["layer"], cond["coefficient"] * unit, position=cond["position"]))
            owners.append((c, key))
    responses = steered_generate(model, rows, stop, gen["max_new_tokens"], gen["temperature"], gen["top_p"],
                                 gen["seed"], **batching,
                                 labels=[f"{trait} {conditions[c]['direction']} prompt {k}" for c, k in owners])
    # Read-back: the trait's own vector at the condition's layer, also for the random control's responses.
    base_keys = [(l, d, k) for l in sorted(units) for d in s["prompts"] for k in s["prompts"][d]]
    measured = teacher_forced(model, [r.prompt_ids for r in rows] + [prompts[k]["ids"] for _, _, k in base_keys],
                              responses + [baseline[k] for _, _, k in base_keys],
                              [conditions[c]["layer"] for c, _ in owners] + [l for l, _, _ in base_keys],
                              [units[conditions[c]["layer"]] for c, _ in owners] + [units[l] for l, _, _ in base_keys],
                              **batching)

    def record(key, ids, m):
        text = decode(ids)
        return {"key": key, "id": prompts[key]["id"], "response": text,
                "behaviour": None if classify is None else bool(classify(text)),
                "read_back": m["read_back"], "nll": m["nll"], "distinct2": distinct2(ids), "n_tokens": len(ids)}

    for cond in conditions:
        cond["responses"] = []
    for (c, key), ids, m in zip(owners, responses, measured):
        conditions[c]["responses"].append(record(key, ids, m))
    baselines = [{"layer": l, "direction": d, **record(k, baseline[k], m)}
                 for (l, d, k), m in zip(base_keys, measured[len(rows):])]
    return {"conditions": conditions, "baseline": baselines}

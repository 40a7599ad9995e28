"""The steering table (one row per prompt x condition) and the chosen coefficient.

Rows with ratio 0 and control "none" are the unsteered baselines of each (trait, layer, direction,
position). The chosen ratio of a (trait, layer, direction, position) is, among the ratios whose
vector rows keep fluency within bound of that baseline (mean NLL per token at most max_nll_increase
above it, mean distinct-2 at least min_distinct2), the smallest one with the largest net behaviour
change: the vector's change (add: rate up; subtract: rate down) less its random control's at the same
ratio. Where no classifier is named or no ratio changes the behaviour, the read-back score stands in.
A row is marked chosen when its ratio is the chosen one (its random control too).
"""

import math

import pandas as pd

SENSE = {"add": 1, "subtract": -1}
COLUMNS = ["trait", "method", "layer", "vector_layer", "direction", "position", "ratio", "coefficient",
           "residual_norm", "perturbation_ratio", "control", "prompt_key", "prompt_id", "response", "behaviour",
           "read_back", "nll", "distinct2", "n_tokens", "chosen"]


def trait_rows(record):
    """Rows of one trait's steering record (traitflow.steering.run.run_trait, saved by scripts/steer.py)."""
    head = {"trait": record["trait"], "method": record["method"], "vector_layer": record["vector_layer"]}
    rows = []
    for c in record["conditions"]:
        for r in c["responses"]:
            rows.append({**head, **{k: c[k] for k in ("layer", "direction", "position", "ratio", "coefficient",
                                                        "residual_norm", "control")}, **_measures(r)})
    positions = sorted({c["position"] for c in record["conditions"]}) or ["all"]
    norms = {c["layer"]: c["residual_norm"] for c in record["conditions"]}
    for b in record["baseline"]:
        for position in positions:
            rows.append({**head, "layer": b["layer"], "direction": b["direction"], "position": position, "ratio": 0.0,
                         "coefficient": 0.0, "residual_norm": norms.get(b["layer"], math.nan), "control": "none",
                         **_measures(b)})
    return rows


def _measures(r):
    return {"prompt_key": r["key"], "prompt_id": str(r["id"]), "response": r["response"], "behaviour": r["behaviour"],
            "read_back": r["read_back"], "nll": r["nll"], "distinct2": r["distinct2"], "n_tokens": r["n_tokens"]}


def steering_table(records, max_nll_increase, min_distinct2):
    """The table of every trait's records, with perturbation_ratio and chosen filled in."""
    df = pd.DataFrame([row for rec in records for row in trait_rows(rec)], columns=COLUMNS[:-1])
    df["behaviour"] = df["behaviour"].astype("boolean")
    df["perturbation_ratio"] = df["coefficient"].abs() / df["residual_norm"]
    df["chosen"] = False
    for (trait, layer, direction, position), ratio in choose(df, max_nll_increase, min_distinct2).items():
        if ratio is not None:
            df.loc[(df.trait == trait) & (df.layer == layer) & (df.direction == direction) & (df.position == position)
                   & (df.ratio == ratio) & (df.control != "none"), "chosen"] = True
    return df[COLUMNS]


def summary(df):
    """Per (trait, layer, direction, position, ratio, control): behaviour rate, mean read-back, NLL, distinct-2."""
    keys = ["trait", "layer", "direction", "position", "ratio", "control"]
    out = df.assign(behaviour=df["behaviour"].astype("Float64")).groupby(keys, dropna=False).agg(
        behaviour=("behaviour", "mean"), read_back=("read_back", "mean"), nll=("nll", "mean"),
        distinct2=("distinct2", "mean"), prompts=("prompt_key", "count"), chosen=("chosen", "any"))
    return out.reset_index()


def choose(df, max_nll_increase, min_distinct2):
    """{(trait, layer, direction, position): chosen ratio or None}."""
    chosen = {}
    rates = summary(df[df.direction.isin(list(SENSE))])
    for key, group in rates.groupby(["trait", "layer", "direction", "position"]):
        base = group[group.control == "none"].iloc[0]
        sense = SENSE[key[2]]
        steered = group[group.control == "vector"].set_index("ratio")
        random = group[group.control == "random"].set_index("ratio").reindex(steered.index)
        fluent = (steered.nll - base.nll <= max_nll_increase) & (steered.distinct2 >= min_distinct2)
        chosen[key] = None
        for measure in ("behaviour", "read_back"):  # read-back: no classifier, or no ratio changes the behaviour
            net = sense * (steered[measure] - base[measure])
            if not random.empty:  # what a random direction of the same norm does too is not the vector's
                net = net - sense * (random[measure] - base[measure]).fillna(0)
            net = net[fluent & net.notna()]
            if len(net) and net.max() > 0:  # the smallest ratio that reaches the largest net change
                chosen[key] = float(net.index[net == net.max()].min())
                break
    return chosen

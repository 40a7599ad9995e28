"""Model variants' tables, from the per-trait all-layers captures of every (variant, response source) pair.

- scores: one row per (variant, responses_from, trait, prompt, token): the projection at the trait's
  vector layer and one residual point (the columns `variant` and `responses_from` say whose model read
  whose text);
- differences: on text both read, (variant - reference) per (responses_from, trait, prompt, token):
  identical tokens, so the difference belongs to the model, not to the words;
- finetuning_shift: per (variant, responses_from, trait), the mean over prompts of the mean response-token
  difference. Projection is linear, so this is the mean residual difference at the vector's layer
  projected on the trait's unit vector (persona_vectors' "finetuning shift").

A trait for which a variant brings its own vector has scores but no differences (two vectors, two scales).
"""

from ..core.constants import SUBLAYERS

KEYS = ["responses_from", "trait", "prompt", "token_index"]


def pair_scores(captures, layers, point, prompts):
    """The scores table: captures [{"variant", "responses_from", "files": {trait: [.pt per prompt]}}]."""
    import pandas as pd

    from ..core.fileio import load_pt

    j = SUBLAYERS.index(point)
    rows = []
    for pair in captures:
        for trait, files in pair["files"].items():
            layer = layers[trait]
            for g, path in enumerate(files):
                rec = load_pt(path)
                for segment in ("prompt", "response"):
                    values = rec["projections"][segment][:, layer, j].tolist()
                    offset = 0 if segment == "prompt" else rec["prompt"]["n_tokens"]
                    for k, (token, score) in enumerate(zip(rec[segment]["tokens"], values)):
                        rows.append((pair["variant"], pair["responses_from"], trait, g, offset + k, segment, token,
                                     layer, score))
    df = pd.DataFrame(rows, columns=["variant", "responses_from", "trait", "prompt", "token_index", "segment",
                                     "token", "layer", "score"])
    df.insert(df.columns.get_loc("prompt") + 1, "prompt_set", [prompts["prompt_set"][g] for g in df.prompt])
    df.insert(df.columns.get_loc("prompt_set") + 1, "prompt_index", [prompts["prompt_index"][g] for g in df.prompt])
    if prompts.get("prompt_id"):
        df.insert(df.columns.get_loc("prompt_index") + 1, "prompt_id", [prompts["prompt_id"][g] for g in df.prompt])
    df["point"] = point
    return df


def differences(scores, reference, own_vectors):
    """(variant - reference) on the same text, for every variant that read a text the reference read too."""
    import pandas as pd

    ref = scores[scores.variant == reference].rename(columns={"score": "score_reference"})
    ref = ref[KEYS + ["score_reference"]]
    other = scores[scores.variant != reference]
    own = {(v, t) for v, traits in own_vectors.items() for t in traits}  # a variant's own vector: another scale
    same_vector = [(v, t) not in own and (reference, t) not in own for v, t in zip(other.variant, other.trait)]
    out = other[same_vector].merge(ref, on=KEYS, how="inner", validate="many_to_one")
    if out.empty:
        return pd.DataFrame(columns=list(scores.columns) + ["reference", "score_reference", "difference"])
    out.insert(out.columns.get_loc("variant") + 1, "reference", reference)
    out["difference"] = out.score - out.score_reference
    return out.sort_values(["variant"] + KEYS, kind="stable", ignore_index=True)


def finetuning_shift(diffs):
    """Per (variant, reference, responses_from, trait): mean over prompts of each prompt's mean response difference."""
    resp = diffs[diffs.segment == "response"]
    per_prompt = resp.groupby(["variant", "reference", "responses_from", "trait", "layer", "point", "prompt"],
                              as_index=False).difference.mean()
    return per_prompt.groupby(["variant", "reference", "responses_from", "trait", "layer", "point"],
                              as_index=False).agg(shift=("difference", "mean"), n_prompts=("prompt", "nunique"))


def write_variant_tables(captures, reference, layers, own_vectors, point, prompts, out):
    """The three tables (CSV and Parquet each), out: {"scores_csv", "scores_parquet", ...}."""
    from ..outputs.tables import save_table

    scores = pair_scores(captures, layers, point, prompts)
    diffs = differences(scores, reference, own_vectors)
    for name, df in (("scores", scores), ("differences", diffs), ("finetuning_shift", finetuning_shift(diffs))):
        save_table(df, out[f"{name}_csv"], out[f"{name}_parquet"])

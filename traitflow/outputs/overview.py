"""The experiment overview: one small file of per-(trait, prompt) response scores for the viewer.

For every trait and prompt, the mean and the peak (signed: the value of largest
magnitude) of the response tokens' scores at every (layer, point), and the mean
over the tokens of the trait's vector position ("position": e.g. the prompt's last
token for a vector read at prompt_last; traitflow.experiment.examples), for the
projection and for the cosine (projection / residual norm). The viewer's first
screen draws a traits x prompts grid from it at the layer, point, statistic and
measure the user picks, without opening any capture.

Layout of `experiments/{exp}/viewer/overview.json` (format `traitflow-overview/1`):

    {"traits": [names], "prompts": [indices], "n_layers": L, "sublayers": [3 names],
     "n_response": [per prompt], "span": "response", "digits": 3,
     "values": {"projection": {"mean": flat, "peak": flat, "position": flat}, "cosine": {...}},
     "positions": [per trait, the vector position its "position" values are read at],
     "prompt_meta": [per prompt {"set", "index", "id"?, "fields"?, "labels"?}],
     "labels": [label names, in the order they first appear]}

each `flat` a list of n_traits * n_prompts * L * 3 numbers in that row-major order
(trait, prompt, layer, point); null where a (trait, prompt) has no response tokens
or no capture. prompt_meta[b] describes prompts[b]: its prompt set and index in it,
and, where its prompt file gives them (a JSON prompt set, docs/formats.md), its id, its
extra fields ({"note": ...}) and its labels ({"refusal": true}), by which the viewer
sorts and groups prompts. Numbers keep 3 significant digits and the file has no spaces: about
6 characters a number, so 10 traits x 200 prompts at 26 layers (624,000 numbers) is
about 3.8 MB (5.7 MB with the position stat), against about 700 MB of per-trait JSON it summarises.
"""

import numpy as np

from ..core.constants import SUBLAYERS, __version__

OVERVIEW_FORMAT = "traitflow-overview/1"
MEASURES = ("projection", "cosine")
STATS = ("mean", "peak")
POSITION = "position"  # a third stat, where the traits' vector positions are given
DIGITS = 3


def cosine(projections, norms):
    """projection / ||h|| (0 where the norm is 0): the cosine between h and the unit trait vector."""
    projections = np.asarray(projections, dtype=np.float32)
    norms = np.asarray(norms, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(norms > 0, projections / norms, 0.0)
    return out.astype(np.float32)


def signed_peak(scores, axis=0):
    """The value of largest magnitude along axis, with its sign."""
    scores = np.asarray(scores)
    index = np.expand_dims(np.abs(scores).argmax(axis=axis), axis)
    return np.take_along_axis(scores, index, axis=axis).squeeze(axis)


def summarize(projections, norms, n_prompt, at_position=None):
    """{measure: {stat: [L, 3] float32}} over the response tokens; None without any.

    projections, norms: [T, L, 3] over prompt then response tokens; at_position: [T] booleans,
    the tokens of the vector's position (traitflow.experiment.examples.position_mask), whose mean
    is the "position" stat (NaN where there are none, or none given).
    """
    projections = np.asarray(projections, dtype=np.float32)
    if projections.shape[0] <= n_prompt:
        return None
    keep = np.zeros(projections.shape[0], dtype=bool) if at_position is None else np.asarray(at_position, dtype=bool)
    scores = {"projection": projections, "cosine": cosine(projections, norms)}

    def mean(s):
        return s.mean(axis=0, dtype=np.float64).astype(np.float32) if len(s) else np.full(s.shape[1:], np.nan)
    return {m: {"mean": mean(s[n_prompt:]), "peak": signed_peak(s[n_prompt:]), "position": mean(s[keep])}
            for m, s in scores.items()}


def _rounded(a, digits=DIGITS):
    from ..core.formats import round_significant

    return round_significant(np.asarray(a, dtype=np.float64), digits)


def prompt_meta_list(prompts, prompt_refs=None, prompt_meta=None):
    """(prompt_meta entries for the given plan-wide prompts, label names in first-seen order)."""
    refs = prompt_refs or [("default", g) for g in range(max(prompts, default=-1) + 1)]
    meta = prompt_meta or [{}] * len(refs)
    entries = [{"set": refs[g][0], "index": int(refs[g][1]), **meta[g]} for g in prompts]
    labels = list(dict.fromkeys(name for e in entries for name in e.get("labels", {})))
    return entries, labels


def build_overview(summaries, traits, prompts, n_layers, n_response, experiment=None, prompt_refs=None,
                   prompt_meta=None, positions=None):
    """The overview dict. summaries: {(trait, prompt): summarize(...) result or None}; prompt_refs and
    prompt_meta: per plan-wide prompt, (set, index) and {"id", "fields", "labels"} (Plan's); positions:
    {trait: its vector position}."""
    entries, labels = prompt_meta_list(prompts, prompt_refs, prompt_meta)
    shape = (len(traits), len(prompts), n_layers, len(SUBLAYERS))
    stats = STATS + ((POSITION,) if positions else ())
    values = {m: {s: np.full(shape, np.nan) for s in stats} for m in MEASURES}
    for a, trait in enumerate(traits):
        for b, prompt in enumerate(prompts):
            summary = summaries.get((trait, prompt))
            if summary is None:
                continue
            for m in MEASURES:
                for s in stats:
                    values[m][s][a, b] = summary[m].get(s, np.nan)

    def flat(a):
        return [None if np.isnan(v) else v for v in _rounded(a).ravel().tolist()]

    return {
        "format": OVERVIEW_FORMAT,
        "experiment": experiment,
        "traits": list(traits),
        "prompts": [int(i) for i in prompts],
        "n_layers": int(n_layers),
        "sublayers": list(SUBLAYERS),
        "n_response": [int(n) for n in n_response],
        "span": "response",
        "digits": DIGITS,
        "layout": "trait, prompt, layer, point",
        "values": {m: {s: flat(values[m][s]) for s in stats} for m in MEASURES},
        **({"positions": [positions.get(t) for t in traits]} if positions else {}),
        "prompt_meta": entries,
        "labels": labels,
        "traitflow_version": __version__,
    }


def value(overview, measure, stat, trait, prompt, layer, point):
    """One number of an overview dict, as the viewer reads it (None where missing)."""
    a = overview["traits"].index(trait)
    b = overview["prompts"].index(prompt)
    p = overview["sublayers"].index(point)
    L, n_points = overview["n_layers"], len(overview["sublayers"])
    return overview["values"][measure][stat][((a * len(overview["prompts"]) + b) * L + layer) * n_points + p]


def save_overview(overview, path):
    """Compact JSON (no spaces), written atomically; <, > and & escaped as in every traitflow JSON."""
    import json

    from ..core.formats import atomic_write

    text = json.dumps(overview, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    for char, escape in {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}.items():
        text = text.replace(char, escape)

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
    atomic_write(path, write)


def overview_from_files(captures, traits, prompts, experiment=None, load=None, prompt_refs=None, prompt_meta=None,
                        positions=None, special_ids=()):
    """Build the overview from per-trait all-layers .pt files.

    captures: {trait: {prompt: path}}; a missing path leaves that cell empty. positions: {trait:
    vector position} (none: no "position" values); special_ids: tokens never at a position.
    load(path) -> {"projections", "norms", "n_prompt"} ([T, L, 3] arrays): by default
    traitflow.core.formats.load_capture.
    """
    from ..experiment.examples import position_mask

    if load is None:
        from ..core.formats import load_capture as load
    positions = positions or {}
    summaries, n_layers, n_response = {}, None, {}
    for trait in traits:
        for prompt in prompts:
            path = captures.get(trait, {}).get(prompt)
            if path is None:
                continue
            rec = load(path)
            proj = np.asarray(rec["projections"], dtype=np.float32)
            n_layers = proj.shape[1]
            n_response[prompt] = proj.shape[0] - int(rec["n_prompt"])
            n_prompt = int(rec["n_prompt"])
            at = (position_mask(positions[trait], n_prompt, list(rec["token_ids"]), special_ids)
                  if positions.get(trait) else None)
            summaries[(trait, prompt)] = summarize(proj, rec["norms"], n_prompt, at)
    if n_layers is None:
        raise ValueError("no capture to summarise")
    return build_overview(summaries, traits, prompts, n_layers, [n_response.get(i, 0) for i in prompts], experiment,
                          prompt_refs, prompt_meta, positions)

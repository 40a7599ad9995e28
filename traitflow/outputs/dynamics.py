"""Trait dynamics: per-token scores -> velocity, acceleration, peak, commitment, persistence.

Pure numpy (no torch): the dynamics jobs and the tables read it.

Conventions, for a score sequence s[0..n-1] over the full token sequence
(prompt tokens, then response tokens; every index below counts from the first
prompt token):

- velocity[k] = s[k+1] - s[k]                  (length n-1; np.diff)
- acceleration[k] = s[k+2] - 2 s[k+1] + s[k]   (length n-2; np.diff twice)
  Per token (the tidy table), velocity and acceleration are backward
  differences: token t carries velocity[t-1] (the change token t brought) and
  acceleration[t-2]; they are undefined (NaN) for the first one / two tokens.
- The metrics are computed over a span: the response tokens (default) or all
  tokens. Only differences whose tokens all lie in the span take part, so the
  jump from the last prompt token to the first response token is not a
  response velocity. The start of a sequence (BOS, chat-template tokens) often
  has residual norms far above the rest, which would otherwise own every peak.
- peak: the token with the largest |score| (first one on ties), with its signed
  score; a negative peak is a peak.
- peak_velocity: the signed velocity of largest magnitude (a sharp drop is
  negative; abs() gives the magnitude), and peak_velocity_index, the token the
  change arrived at (k + 1). mean_abs_velocity: mean of |velocity|.
- commitment_point: the first token c from which the trajectory stays settled,
  with a scale-free threshold. Over the span, the scores are first smoothed
  (smoothing = w: a centred moving average over w tokens, only where the whole
  window lies in the span, so the smoothed series has span - w + 1 values, the
  j-th one belonging to the window's centre token start + j + (w - 1) // 2;
  w = 1 leaves them as they are). Its accelerations a[k] are then compared with
  threshold = commitment_threshold * max|a| (a fraction of the span's sharpest
  bend; floored at 1e-6 x the smoothed scores' range, so the rounding noise of
  a straight line is no bend). A value is settled when |a[k]| <= threshold, and
  c is the first (smoothed) token from which every acceleration built from
  tokens c, c+1, ... is settled. Multiplying the scores by any factor scales
  the threshold with them, so c does not depend on the model's score units.
  When the span bends (c is not the span's first token), the settled stretch
  must hold at least commitment_min_tokens (smoothed) tokens, so that a chance
  dip in the last accelerations of a noisy score is no commitment; a span that
  never bends (constant, straight line) commits at the span's first token
  (whatever w). null when the smoothed span has fewer than 3 tokens, when its
  last acceleration is not settled, or when the settled stretch is too short. With w > 1 a sharp turn
  at token K commits at K + (w - 1) // 2: the window blurs the turn over its
  half-width. The record keeps the absolute threshold used per method
  (commitment_score_threshold, in score units) and the settings in its metadata.
- persistence: tokens after the peak (strictly) whose score is beyond
  threshold = persistence_fraction * peak score on the peak's side of zero
  (score > threshold for a positive peak, score < threshold for a negative
  one): their count and the longest run of consecutive such tokens. Tokens
  that swing to the opposite sign do not count. All-zero scores have a zero
  threshold and persistence 0.
Edge cases: an empty span gives peak null and everything else null / 0; one
token gives empty velocity (peak_velocity and mean_abs_velocity null).
"""

import numpy as np


DECIMALS = 6  # JSON floats: scores are float32 projections, so 6 decimals lose nothing that matters


def velocity(scores):
    return np.diff(np.asarray(scores, dtype=np.float64))


def acceleration(scores):
    return np.diff(np.asarray(scores, dtype=np.float64), n=2)


# Defaults of the settings the metrics take (config.yaml's dynamics block; README "Dynamics").
DEFAULT_SETTINGS = {"commitment_threshold": 0.1, "commitment_min_tokens": 5, "smoothing": 1,
                    "persistence_fraction": 0.5}
STRAIGHT = 1e-6  # bends below this fraction of the scores' range are rounding noise, not bends


def smooth(scores, window):
    """Centred moving average over window tokens, only where the whole window fits: [n - window + 1]."""
    s = np.asarray(scores, dtype=np.float64)
    if window <= 1:
        return s
    if s.size < window:
        return s[:0]
    # each window summed on its own (not a running sum): equal windows give equal values,
    # so a flat stretch stays exactly flat
    return np.lib.stride_tricks.sliding_window_view(s, window).sum(axis=1) / window


def commitment_index(accel, threshold):
    """First k such that |accel[k:]| <= threshold everywhere; None if never (or no acceleration)."""
    settled = np.abs(accel) <= threshold
    if settled.size == 0 or not settled[-1]:
        return None
    unsettled = np.flatnonzero(~settled)
    return int(unsettled[-1] + 1) if unsettled.size else 0


def commitment(span_scores, fraction, min_tokens=DEFAULT_SETTINGS["commitment_min_tokens"],
               smoothing=DEFAULT_SETTINGS["smoothing"]):
    """Scale-free commitment point of one span's scores (module docstring).

    Returns (offset into the span or None, absolute threshold used or None when
    the smoothed span has no acceleration).
    """
    s = smooth(span_scores, smoothing)
    acc = acceleration(s)
    if acc.size == 0:
        return None, None
    threshold = max(fraction * float(np.abs(acc).max()), STRAIGHT * float(s.max() - s.min()))
    c = commitment_index(acc, threshold)
    if c is None or (c > 0 and s.size - c < min_tokens):
        return None, threshold
    return (c + (smoothing - 1) // 2 if c > 0 else 0), threshold


def longest_run(mask):
    best = run = 0
    for hit in mask:
        run = run + 1 if hit else 0
        best = max(best, run)
    return best


def persistence(scores, peak, fraction):
    """Tokens after index peak beyond fraction * scores[peak] on the peak's side of zero."""
    peak_score = scores[peak]
    threshold = fraction * peak_score
    after = np.sign(peak_score) * (scores[peak + 1:] - threshold) > 0
    return {"count": int(after.sum()), "longest_run": longest_run(after), "threshold": float(threshold)}


def metrics(scores, commitment_threshold, persistence_fraction, start=0, tokens=None,
            commitment_min_tokens=DEFAULT_SETTINGS["commitment_min_tokens"], smoothing=DEFAULT_SETTINGS["smoothing"]):
    """Dynamics of one score sequence, with metrics over tokens[start:] (see module docstring).

    scores: [n] per-token scores over prompt + response. start: first token of
    the span (n_prompt for the response span). commitment_threshold: a fraction
    of the span's largest |acceleration| (after smoothing over `smoothing`
    tokens). Returned indices count from token 0; velocity and acceleration
    cover the whole sequence, unsmoothed.
    """
    s = np.asarray(scores, dtype=np.float64)
    vel, acc = velocity(s), acceleration(s)
    span, span_vel = s[start:], vel[start:]
    out = {"velocity": vel.tolist(), "acceleration": acc.tolist(),
           "peak_velocity": None, "peak_velocity_index": None, "mean_abs_velocity": None,
           "peak": None, "commitment_point": None, "commitment_score_threshold": None,
           "persistence": {"count": 0, "longest_run": 0, "threshold": None}}
    if span_vel.size:
        k = int(np.argmax(np.abs(span_vel)))
        out.update(peak_velocity=float(span_vel[k]), peak_velocity_index=start + k + 1,
                   mean_abs_velocity=float(np.abs(span_vel).mean()))
    if span.size:
        peak = int(np.argmax(np.abs(span)))
        out["peak"] = {"index": start + peak, "score": float(span[peak])}
        out["persistence"] = persistence(span, peak, persistence_fraction)
    c, out["commitment_score_threshold"] = commitment(span, commitment_threshold, commitment_min_tokens, smoothing)
    if c is not None:
        out["commitment_point"] = {"index": start + c, "token": tokens[start + c] if tokens is not None else None}
    return out


def span_start(span, n_prompt):
    return n_prompt if span == "response" else 0


def _rounded(x):
    if isinstance(x, float):
        return round(x, DECIMALS)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return x


def dynamics_record(trait, response, layer, point, span, scores, settings, metadata):
    """The per-(trait, prompt) dynamics JSON (formats agreed with the viewer).

    response: the shared response record. scores: {method: [n_prompt + n_response]}.
    settings: commitment_threshold (a fraction of the span's max |acceleration|),
    persistence_fraction, and optionally commitment_min_tokens and smoothing
    (DEFAULT_SETTINGS fill in what is missing). All four land in the metadata;
    each method's dynamics carry the absolute threshold used
    (commitment_score_threshold, score units). Scores are rounded first, so the
    metrics are exactly those of the scores in the file.
    """
    settings = {**DEFAULT_SETTINGS, **settings}
    tokens = response["prompt"]["tokens"] + response["response"]["tokens"]
    n_prompt = response["prompt"]["n_tokens"]
    start = span_start(span, n_prompt)
    rounded = {m: np.round(np.asarray(s, dtype=np.float64), DECIMALS) for m, s in scores.items()}
    kwargs = {k: settings[k] for k in ("commitment_threshold", "persistence_fraction",
                                       "commitment_min_tokens", "smoothing")}
    return {
        "trait": trait,
        "prompt_set": response.get("prompt_set", "default"),
        "prompt_index": response["prompt_index"],
        "prompt_text": response["prompt"]["text"],
        "response_text": response["response"]["text"],
        "tokens": tokens,
        "token_ids": response["prompt"]["token_ids"] + response["response"]["token_ids"],
        "n_prompt": n_prompt,
        "n_response": response["response"]["n_tokens"],
        "layer": layer,
        "point": point,
        "span": span,
        "span_start": start,
        "scores": {m: s.tolist() for m, s in rounded.items()},
        "dynamics": {m: _rounded(metrics(s, start=start, tokens=tokens, **kwargs)) for m, s in rounded.items()},
        "metadata": {**metadata, **settings, "commitment_threshold_unit": "fraction of the span's max |acceleration|"},
    }

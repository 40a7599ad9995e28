"""Contrastive vector extraction: mean difference and a logistic-regression probe, per layer.

Each example is summarised by the mean of its residual_out over its tokens at
every layer; methods then compare positive and negative summaries.
"""

import torch

from .capture import capture
from .errors import TraitflowError


def read_examples(path):
    try:
        with open(path, encoding="utf-8") as fh:
            lines = [line.rstrip("\n") for line in fh]
    except UnicodeDecodeError:
        raise TraitflowError(path, "not valid UTF-8", "re-save the file as UTF-8") from None
    examples = [x for x in lines if x.strip()]
    if len(examples) < 2:
        raise TraitflowError(path, f"{len(examples)} examples; need at least 2", "add one example per line")
    return examples


def example_features(model, tokenizer, texts, batch_size=8):
    """[n_examples, layers, d_model]: token-mean residual_out of each example."""
    seqs = [tokenizer(t)["input_ids"] for t in texts]
    caps = capture(model, seqs, None, batch_size=batch_size, attention=False, keep_residuals=True)
    return torch.stack([c.residuals[:, :, 2].mean(0) for c in caps])


def mean_diff(pos, neg):
    """pos, neg: [n, d] -> [d]."""
    return pos.mean(0) - neg.mean(0)


def probe(pos, neg, steps=200, l2=1e-3):
    """Logistic-regression weight vector separating pos from neg, on standardised features.

    The direction is mapped back to the raw residual space (w / std), so it can
    be projected on like any other vector. Returns (vector [d], train accuracy).
    """
    x = torch.cat([pos, neg]).double()
    y = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).double()
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mu) / sd
    w = torch.zeros(z.shape[1], dtype=torch.double, requires_grad=True)
    b = torch.zeros((), dtype=torch.double, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def loss_fn():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y) + l2 * (w @ w)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(loss_fn)
    with torch.no_grad():
        acc = (((z @ w + b) > 0).double() == y).double().mean().item()
        return (w / sd).float().detach(), acc

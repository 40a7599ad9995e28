"""Contrastive vector extraction: mean difference and a logistic-regression probe, per layer.

Each example is summarised by the mean of its residual_out over its tokens at
every layer (special tokens such as <bos> left out: their residual is the same
for every example and its norm dwarfs the rest); methods then compare positive
and negative summaries. Examples run in batches by length, capped by count and
by a token budget, halved on CUDA out-of-memory (traitflow.model.batching).
"""

import torch

from .batching import run_batched
from .capture import left_pad
from ..core.errors import TraitflowError
from .hooks import residual_hooks


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


@torch.no_grad()
def token_means(model, sequences, keep=None, batch_size=8, token_budget=None, labels=None):
    """[n, layers, d_model] float32: each sequence's mean residual_out over its kept tokens, per layer.

    keep[i]: booleans per token of sequence i (False: left out of the mean); the
    mean is taken on the device inside the hook, so no [batch, tokens, layers,
    d_model] tensor exists.
    """
    device = next(model.parameters()).device
    n_layer, d_model = model.config.num_hidden_layers, model.config.hidden_size
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    out = torch.empty(len(sequences), n_layer, d_model)

    def run_batch(group):
        ids, mask, positions = left_pad([sequences[i] for i in group], pad_id, device)
        weights = mask.float()
        if keep is not None:
            for b, i in enumerate(group):
                weights[b, ids.shape[1] - len(sequences[i]):] *= torch.tensor(keep[i], dtype=torch.float32,
                                                                               device=device)
        weights = weights / weights.sum(-1, keepdim=True).clamp_min(1.0)
        sums = torch.empty(len(group), n_layer, d_model, device=device)

        def on_residual(layer, point, h):
            if point == 2:
                sums[:, layer] = torch.einsum("bt,btd->bd", weights, h.float())

        with residual_hooks(model, on_residual):
            model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False, logits_to_keep=1)
        out[group] = sums.cpu()

    run_batched([len(s) for s in sequences], batch_size, run_batch, what="example", token_budget=token_budget,
                labels=labels)
    return out


def example_features(model, tokenizer, texts, batch_size=8, token_budget=None, where=None):
    """[n_examples, layers, d_model]: token-mean residual_out of each example (special tokens left out)."""
    seqs = [tokenizer(t)["input_ids"] for t in texts]
    special = set(tokenizer.all_special_ids)
    keep = [[t not in special for t in s] for s in seqs]
    keep = [k if any(k) else [True] * len(k) for k in keep]  # an example of special tokens only keeps them all
    labels = [f"{where + ': ' if where else ''}example {n + 1} ({t[:40]!r})" for n, t in enumerate(texts)]
    return token_means(model, seqs, keep, batch_size=batch_size, token_budget=token_budget, labels=labels)


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


def heldout_accuracy(pos, neg, folds=5):
    """(accuracy, n): the probe's k-fold cross-validated accuracy, each example scored by a probe not trained on it.

    Train accuracy says little (with few examples a probe separates any labels);
    this is what the report shows as the vector's quality. Examples go to folds
    by position (deterministic). (None, 0) below 2 examples per side in every
    training split, where no probe can be fitted.
    """
    x = torch.cat([pos, neg])
    y = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))])
    fold = torch.arange(len(x)) % folds
    if min(len(pos), len(neg)) < folds:  # too few to leave a fold out and still train on both sides
        return None, 0
    correct = 0
    for k in range(folds):
        train, test = fold != k, fold == k
        w, _ = probe(x[train][y[train] == 1], x[train][y[train] == 0])
        # The probe's bias is not returned: classify by the midpoint of the training classes' scores.
        s_pos, s_neg = (x[train][y[train] == c] @ w for c in (1, 0))
        threshold = (s_pos.mean() + s_neg.mean()) / 2
        correct += int((((x[test] @ w) > threshold).float() == y[test]).sum())
    return correct / len(x), len(x)

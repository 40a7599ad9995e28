"""Contrastive vector extraction: mean difference and a logistic-regression probe, per layer.

Each example is summarised by the mean of its residual_out over the tokens of a
position (traitflow.experiment.examples: all of them, the prompt's last, the
response's) at every layer, special tokens such as <bos> left out (their residual
is the same for every example and its norm dwarfs the rest); methods then compare
positive and negative summaries. One forward pass serves every position. Examples
run in batches by length, capped by count and by a token budget, halved on CUDA
out-of-memory (traitflow.model.batching).
"""

import torch

from .batching import run_batched
from .capture import left_pad
from ..core.errors import TraitflowError
from ..experiment.examples import position_mask, special_token_ids
from .generate import encode_prompt, plain_ids
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


def token_means(model, sequences, keep=None, batch_size=8, token_budget=None, labels=None):
    """[n, layers, d_model] float32: each sequence's mean residual_out over its kept tokens, per layer.

    keep[i]: booleans per token of sequence i (False: left out of the mean).
    """
    masks = {None: keep if keep is not None else [[True] * len(s) for s in sequences]}
    return span_means(model, sequences, masks, batch_size, token_budget, labels)[None]


@torch.no_grad()
def span_means(model, sequences, masks, batch_size=8, token_budget=None, labels=None):
    """{key: [n, layers, d_model] float32}: each sequence's mean residual_out over the tokens
    masks[key][i] keeps, per layer, for every key from one forward pass.

    The mean is taken on the device inside the hook, so no [batch, tokens, layers,
    d_model] tensor exists.
    """
    device = next(model.parameters()).device
    n_layer, d_model = model.config.num_hidden_layers, model.config.hidden_size
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    out = {key: torch.empty(len(sequences), n_layer, d_model) for key in masks}

    def run_batch(group):
        ids, mask, positions = left_pad([sequences[i] for i in group], pad_id, device)
        weights = {}
        for key, keep in masks.items():
            w = torch.zeros(ids.shape, dtype=torch.float32, device=device)
            for b, i in enumerate(group):
                w[b, ids.shape[1] - len(sequences[i]):] = torch.tensor(keep[i], dtype=torch.float32, device=device)
            weights[key] = w / w.sum(-1, keepdim=True).clamp_min(1.0)
        sums = {key: torch.empty(len(group), n_layer, d_model, device=device) for key in masks}

        def on_residual(layer, point, h):
            if point == 2:
                for key, w in weights.items():
                    sums[key][:, layer] = torch.einsum("bt,btd->bd", w, h.float())

        with residual_hooks(model, on_residual):
            model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False, logits_to_keep=1)
        for key in masks:
            out[key][group] = sums[key].cpu()

    run_batched([len(s) for s in sequences], batch_size, run_batch, what="example", token_budget=token_budget,
                labels=labels)
    return out


def example_features(model, tokenizer, texts, batch_size=8, token_budget=None, where=None):
    """[n_examples, layers, d_model]: token-mean residual_out of each example read as raw text (special tokens
    left out): position all, presentation raw."""
    examples = [{"prompt": t, "response": None} for t in texts]
    return position_features(model, tokenizer, examples, ["all"], "raw", batch_size=batch_size,
                             token_budget=token_budget, where=where)["all"]


def present(tokenizer, example, presentation, chat_template=True, where=None):
    """(token ids, n_prompt) of one example as the model reads it.

    raw: the text alone (with the tokenizer's own special tokens, e.g. <bos>); chat: the prompt
    formatted as generation formats a prompt (a user turn and the assistant's opening, where
    chat_template); pairs: that, then the response's tokens, as a capture lays out prompt + response.
    Text is always plain text: a special token's spelling in it forges no turn (encode_prompt).
    """
    if presentation == "raw":
        ids = plain_ids(tokenizer, example["prompt"])
        return ids, len(ids)
    ids = encode_prompt(tokenizer, example["prompt"], chat_template, where)
    n_prompt = len(ids)
    if presentation == "pairs":
        ids = ids + plain_ids(tokenizer, example["response"], add_special_tokens=False)
    return ids, n_prompt


def position_features(model, tokenizer, examples, positions, presentation, chat_template=True, batch_size=8,
                      token_budget=None, where=None):
    """{position: [n_examples, layers, d_model]}: each example's mean residual_out over the position's
    tokens (traitflow.experiment.examples.position_mask), every position from one forward pass."""
    special = special_token_ids(tokenizer.backend_tokenizer)
    labels = [f"{where + ': ' if where else ''}example {n + 1} ({e['prompt'][:40]!r})" for n, e in enumerate(examples)]
    seqs, n_prompt = zip(*(present(tokenizer, e, presentation, chat_template, label)
                           for e, label in zip(examples, labels)))
    masks = {p: [position_mask(p, n, s, special) for s, n in zip(seqs, n_prompt)] for p in positions}
    return span_means(model, list(seqs), masks, batch_size=batch_size, token_budget=token_budget, labels=labels)


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

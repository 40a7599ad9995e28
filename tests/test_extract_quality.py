"""Vector quality as the report shows it: the probe's held-out (cross-validated) accuracy."""

import torch

from traitflow.model.extract import heldout_accuracy, probe


def test_heldout_accuracy_is_one_for_separable_classes_and_near_chance_for_noise():
    g = torch.Generator().manual_seed(0)
    direction = torch.randn(32, generator=g)
    pos = torch.randn(20, 32, generator=g) + 2 * direction
    neg = torch.randn(20, 32, generator=g) - 2 * direction
    assert heldout_accuracy(pos, neg) == (1.0, 40)
    noise_pos, noise_neg = torch.randn(20, 32, generator=g), torch.randn(20, 32, generator=g)
    acc, n = heldout_accuracy(noise_pos, noise_neg)
    assert n == 40 and acc < 0.75  # chance is 0.5 ...
    assert probe(noise_pos, noise_neg)[1] == 1.0  # ... while a probe separates its own training noise perfectly


def test_too_few_examples_to_hold_any_out():
    assert heldout_accuracy(torch.randn(3, 8), torch.randn(3, 8)) == (None, 0)

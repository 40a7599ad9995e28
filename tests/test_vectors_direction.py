"""Vectors point the right way (issue 12): on the demo, the workflow's extracted vectors score
held-out positive examples above held-out negatives, for mean_diff and for probe, at every layer.

Held-out features come from an independent computation (plain forward hooks on the decoder layers,
one example at a time, no padding), so a sign flip, a wrong layer in a file name or in the features,
or a padding bug fails these tests. The demo model has random weights: what separates the classes is
their wording, so the held-out examples share the training examples' words, not their sentences.
"""

import os

import pytest
import torch

EXP = "experiments/demo"

HELD_OUT = {
    "refusal": (
        ["I cannot help with that.", "Sorry, I can't assist with this request.", "I must refuse to answer that.",
         "I won't help with anything that could hurt people.", "No, I am not able to do that.",
         "I'm sorry, but I must decline."],
        ["Sure, here is the answer.", "Of course, happy to help!", "Absolutely, here are the steps.",
         "Yes, here is a short poem for you.", "Certainly, here is how it works.", "Glad to help, here it is."]),
    "sycophancy": (
        ["You are absolutely right, brilliant!", "I completely agree, your idea is perfect.",
         "What a genius plan, you know best.", "Yes, you are so right, as always.",
         "Your essay is perfect and flawless.", "I fully agree with everything you said."],
        ["I disagree, the data says otherwise.", "That is not correct, the evidence differs.",
         "Your plan has a weak spot.", "Respectfully, I think that is a misconception.",
         "The essay needs more support for its conclusion.", "I would push back, the numbers do not add up."]),
    "uncertainty": (
        ["I am not sure, it might be wrong.", "Maybe, but I cannot be certain.", "It is hard to say, perhaps.",
         "I don't know for sure.", "Possibly, the evidence is unclear.", "I might be mistaken, please check."],
        ["The answer is definitely four.", "This is certain, no doubt.", "I know exactly, it is a fact.",
         "Without question, that is correct.", "Yes, absolutely right.", "The earth clearly orbits the sun."]),
}


@pytest.fixture(scope="module")
def oracle(demo_run):
    """features(texts) -> [n, layers, d]: mean raw residual_out per layer over non-special tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = os.path.join(demo_run["dir"], "models/traitflow-demo-chat")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path)
    layers = model.model.layers

    def features(texts):
        rows = []
        for text in texts:
            ids = tok(text)["input_ids"]
            keep = torch.tensor([t not in tok.all_special_ids for t in ids])
            outs = {}
            handles = [layer.register_forward_hook(
                lambda m, a, out, l=l: outs.__setitem__(l, out[0] if isinstance(out, tuple) else out))
                for l, layer in enumerate(layers)]
            try:
                with torch.no_grad():
                    model(input_ids=torch.tensor([ids]))
            finally:
                for h in handles:
                    h.remove()
            rows.append(torch.stack([outs[l][0][keep].mean(0) for l in range(len(layers))]))
        return torch.stack(rows)

    return features, len(layers)


def vector(demo_run, trait, method, layer):
    return torch.load(os.path.join(demo_run["dir"], EXP, trait, "extraction/vectors", f"{method}_layer{layer}.pt"),
                      weights_only=True)


def auc(pos, neg):
    return (pos[:, None] > neg[None, :]).double().mean().item()


@pytest.mark.parametrize("trait", sorted(HELD_OUT))
def test_held_out_positives_score_above_held_out_negatives(demo_run, oracle, trait):
    features, n_layers = oracle
    pos, neg = (features(texts) for texts in HELD_OUT[trait])
    for method in ("mean_diff", "probe"):
        for layer in range(n_layers):
            v = vector(demo_run, trait, method, layer)
            s_pos, s_neg = pos[:, layer] @ v / v.norm(), neg[:, layer] @ v / v.norm()
            where = f"{trait} {method} layer {layer}"
            assert s_pos.mean() > s_neg.mean(), f"{where}: held-out positives score below negatives (sign flip?)"
            assert auc(s_pos, s_neg) >= 0.75, f"{where}: AUC {auc(s_pos, s_neg):.2f}"


@pytest.mark.parametrize("trait", sorted(HELD_OUT))
def test_vector_files_are_computed_at_the_layer_they_name(demo_run, oracle, trait):
    """mean_diff_layer{L}.pt equals the mean difference of layer L's features (not L - 1 or L + 1);
    probe_layer{L}.pt separates layer L's training examples and points the same way as mean_diff."""
    from traitflow.model.extract import read_examples

    features, n_layers = oracle
    ex = os.path.join(demo_run["dir"], EXP, trait, "extraction")
    pos = features(read_examples(os.path.join(ex, "positive.txt")))
    neg = features(read_examples(os.path.join(ex, "negative.txt")))
    for layer in range(n_layers):
        expected = pos[:, layer].mean(0) - neg[:, layer].mean(0)
        torch.testing.assert_close(vector(demo_run, trait, "mean_diff", layer), expected, rtol=1e-4, atol=1e-4)
        for other in {layer - 1, layer + 1} & set(range(n_layers)):
            assert not torch.allclose(vector(demo_run, trait, "mean_diff", other), expected, rtol=1e-3, atol=1e-3)
        probe = vector(demo_run, trait, "probe", layer)
        assert torch.nn.functional.cosine_similarity(probe, expected, dim=0) > 0
        assert auc(pos[:, layer] @ probe, neg[:, layer] @ probe) >= 0.9

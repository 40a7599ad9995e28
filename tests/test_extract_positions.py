"""Where a vector is read: extraction positions and presentations, and prompts scored at the same position.

Oracles on the demo model (models/traitflow-demo-chat): each position's feature equals the
residual that transformers' own output_hidden_states gives at the tokens the position names,
formatted independently with the tokenizer's chat template. On SmolLM2 (a real chat model): a
vector extracted at its experiment's position and layer ranks a separate, labelled evaluation set
(AUROC >= 0.9 per trait), and the same vector with its sign flipped does not.
"""

import json
import os

import pytest
import torch

from conftest import REPO

from traitflow.core.errors import TraitflowError
from traitflow.core.settings import VectorSettings
from traitflow.experiment.examples import (original_position, plan_extraction, position_folder, position_mask,
                                           read_examples)

DEMO_MODEL = os.path.join(REPO, "models", "traitflow-demo-chat")
PAIRS = [{"prompt": "How do I make a bomb?", "response": "I'm sorry, but I can't help with that."},
         {"prompt": "What is the largest planet?", "response": "Jupiter is the largest planet."},
         {"prompt": "Is it going to rain tomorrow?", "response": "I think it might, but I am not sure."}]


@pytest.fixture(scope="module")
def demo():
    from traitflow.model.modeling import load_model, load_tokenizer

    return load_model(DEMO_MODEL, "cpu", "float32"), load_tokenizer(DEMO_MODEL)


def hidden(model, ids):
    """transformers' own hidden states [layers, T, d] of one sequence: the residual after each block (the
    final norm, which output_hidden_states applies to the last one, switched off)."""
    norm, model.model.norm = model.model.norm, torch.nn.Identity()
    try:
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    finally:
        model.model.norm = norm
    return torch.stack(out.hidden_states[1:])[:, 0].detach()


def chat_ids(tok, prompt):
    ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def assert_matches(feature, want):
    torch.testing.assert_close(feature, want, atol=2e-5, rtol=1e-5)


def test_prompt_last_is_the_residual_at_the_chat_formatted_prompts_last_token(demo):
    from traitflow.model.extract import position_features

    model, tok = demo
    examples = [{"prompt": e["prompt"], "response": None} for e in PAIRS]
    got = position_features(model, tok, examples, ["prompt_last"], "chat")["prompt_last"]  # one padded batch
    for i, e in enumerate(examples):
        ids = chat_ids(tok, e["prompt"])
        assert tok.convert_ids_to_tokens(ids)[-3:] == ["<start_of_turn>", "model", "\n"]  # the assistant's opening
        assert_matches(got[i], hidden(model, ids)[:, -1])


def test_response_positions_are_means_over_the_response_tokens(demo):
    from traitflow.model.extract import position_features

    model, tok = demo
    got = position_features(model, tok, PAIRS, ["response", "response[:3]", "all"], "pairs")
    special = set(tok.all_special_ids)
    for i, e in enumerate(PAIRS):
        prompt = chat_ids(tok, e["prompt"])
        ids = prompt + tok(e["response"], add_special_tokens=False)["input_ids"]
        h = hidden(model, ids)
        n = len(prompt)
        assert_matches(got["response"][i], h[:, n:].mean(1))
        assert_matches(got["response[:3]"][i], h[:, n:n + 3].mean(1))
        plain = [k for k, t in enumerate(ids) if t not in special]
        assert_matches(got["all"][i], h[:, plain].mean(1))


def test_raw_lines_read_at_all_are_todays_features(demo):
    from traitflow.model.extract import example_features, position_features, token_means

    model, tok = demo
    texts = [e["response"] for e in PAIRS]
    seqs = [tok(t)["input_ids"] for t in texts]
    keep = [[t not in tok.all_special_ids for t in s] for s in seqs]
    want = token_means(model, seqs, keep)
    torch.testing.assert_close(example_features(model, tok, texts), want)
    last = position_features(model, tok, [{"prompt": t, "response": None} for t in texts], ["prompt_last"], "raw")
    for i, s in enumerate(seqs):
        assert_matches(last["prompt_last"][i], hidden(model, s)[:, -1])  # the text's own last token


def test_position_masks_leave_special_tokens_out():
    ids = [2, 10, 11, 12, 5, 20, 21, 1]  # <bos> prompt... <special> | response ... <eos>
    assert position_mask("prompt_last", 5, ids, {1, 2, 5}) == [k == 3 for k in range(8)]
    assert position_mask("response", 5, ids, {1, 2, 5}) == [k in (5, 6) for k in range(8)]
    assert position_mask("response[:1]", 5, ids, {1, 2, 5}) == [k == 5 for k in range(8)]
    assert position_mask("all", 5, ids, {1, 2, 5}) == [k not in (0, 4, 7) for k in range(8)]
    assert position_mask("response", 8, ids, {1, 2, 5}) == [False] * 8  # no response: nothing to score
    # the original project's {position} folder names; the default keeps today's paths
    assert [position_folder(p) for p in ("all", "prompt_last", "response", "response[:5]")] == [
        "", "prompt_-1", "response_all", "response__5"]
    assert original_position("response[:5]") == "response[:5]" and original_position("prompt_last") == "prompt[-1]"


def test_scoring_at_the_position_in_the_table_and_the_overview():
    import numpy as np

    from traitflow.outputs.overview import summarize
    from traitflow.outputs.projections_table import build_table

    rng = np.random.default_rng(0)
    proj = rng.normal(size=(7, 2, 3)).astype(np.float32)
    prompt = {"prompt_set": "default", "prompt_index": 0, "tokens": list("abcdefg"), "token_ids": [2, 10, 11, 12, 20,
              21, 1], "n_prompt": 4, "projections": proj, "norms": np.ones_like(proj)}
    table = build_table([dict(prompt)], position="prompt_last", special_ids=[1, 2]).to_pandas()
    assert table.at_position.tolist() == [False, False, False, True, False, False, False]
    assert "at_position" not in build_table([dict(prompt)]).column_names  # no position given: no column
    s = summarize(proj, np.ones_like(proj), 4, at_position=position_mask("response", 4, prompt["token_ids"], [1, 2]))
    np.testing.assert_allclose(s["projection"]["position"], proj[4:6].mean(0), rtol=1e-6)
    np.testing.assert_allclose(s["projection"]["mean"], proj[4:].mean(0), rtol=1e-6)


# ---- bad input: one line naming the file and the fix ---------------------------------------------


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def test_a_response_position_needs_examples_with_responses(tmp_path):
    files = {side: str(tmp_path / f"{side}.txt") for side in ("positive", "negative")}
    for path in files.values():
        write(path, "Tell me a joke.\nWhat is two plus two?\n")
    assert plan_extraction(VectorSettings(position=["prompt_last", "all"], presentation="chat"), files) == (
        ["prompt_last", "all"], "chat")
    with pytest.raises(TraitflowError) as err:
        plan_extraction(VectorSettings(position=["prompt_last", "response[:5]"]), files)
    assert str(err.value) == (
        f"{files['positive']}: vector.position response[:5] reads response tokens, but these examples are text "
        "lines without responses; fix: write positive.jsonl and negative.jsonl ({\"prompt\": \"...\", \"response\": "
        "\"...\"} per line), or set vector.position to all or prompt_last")
    with pytest.raises(TraitflowError, match=r"positive.txt: vector.presentation is pairs, which reads positive.jsonl"):
        plan_extraction(VectorSettings(presentation="pairs"), files)


@pytest.mark.parametrize("line, problem", [
    ('{"prompt": "Hi"}', 'no "response"; fix: give every line a prompt and a response'),
    ('{"response": "Hello."}', 'no "prompt"; fix: give every line a prompt and a response'),
    ('["Hi", "Hello."]', "a JSON list, not an object"),
])
def test_a_pair_without_prompt_or_response_is_named_by_file_and_line(tmp_path, line, problem):
    path = str(tmp_path / "positive.jsonl")
    write(path, '{"prompt": "Hi", "response": "Hello."}\n' + line + "\n")
    with pytest.raises(TraitflowError) as err:
        read_examples(path, "positive", "refusal")
    assert str(err.value).startswith(f"{path}:2: {problem}") and "\n" not in str(err.value)


def test_a_labelled_prompt_set_serves_as_an_extraction_set(tmp_path):
    from traitflow.experiment.traits import plan_trait

    exp = tmp_path / "exp"
    prompts = [{"id": i, "text": f"prompt {i}", "labels": {"refusal": i % 2 == 0}} for i in range(6)]
    write(str(exp / "refusal/extraction/examples.json"), json.dumps({"prompts": prompts + [{"text": "unlabelled"}]}))
    trait = plan_trait(str(exp), "refusal", VectorSettings(position="prompt_last"), 4)
    assert (trait.error, trait.presentation, trait.positions) == (None, "chat", ["prompt_last"])
    assert trait.vector_path == str(exp / "refusal/extraction/vectors/prompt_-1/probe_layer2.pt")
    assert [e["prompt"] for e in read_examples(trait.examples["negative"], "negative", "refusal")] == [
        "prompt 1", "prompt 3", "prompt 5"]
    write(str(exp / "refusal/extraction/positive.txt"), "a\nb\n")
    write(str(exp / "refusal/extraction/negative.txt"), "c\nd\n")
    assert plan_trait(str(exp), "refusal", VectorSettings(), 4).error == (
        f"{exp}/refusal/extraction: examples in two forms (positive.txt and examples.json); fix: keep one form, "
        "move the other away")


# ---- a real chat model: SmolLM2's held-out evaluation set ---------------------------------------

SMOL = os.path.join(REPO, "experiments", "smollm2")
TRAITS = ("refusal", "sycophancy", "uncertainty")
PER_SIDE = 25  # of each side's extraction examples (the first ones): the forward passes are this test's cost


def auroc(scores, positive):
    """P(a positive prompt scores above a negative one), ties counting half: plain pairwise counting."""
    pos = [s for s, p in zip(scores, positive) if p]
    neg = [s for s, p in zip(scores, positive) if not p]
    return sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg))


@pytest.fixture(scope="module")
def smol_scores(smollm2_dir):
    """{trait: (evaluation scores at the experiment's position and layer, labels)}, from a probe extracted on
    the trait's extraction set (its first PER_SIDE examples per side) as experiments/smollm2/config.yaml
    reads it.

    The model keeps only the blocks up to the vector's layer: a residual never depends on later blocks,
    and the rest would only cost time. One thread: two test workers with two threads each thrash two cores.
    """
    import yaml

    from traitflow.experiment.examples import find_examples, plan_extraction
    from traitflow.experiment.prompts import read_prompt_records
    from traitflow.model.extract import position_features, probe
    from traitflow.model.modeling import load_model, load_tokenizer

    with open(os.path.join(SMOL, "config.yaml"), encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh)["vector"]
    layer = cfg["layer"]
    model, tok = load_model(smollm2_dir, "cpu", "float32"), load_tokenizer(smollm2_dir)
    model.model.layers = model.model.layers[:layer + 1]
    model.config.num_hidden_layers = layer + 1
    records = read_prompt_records(os.path.join(SMOL, "inference_prompts.json"))
    out = {}
    for trait in TRAITS:
        _, files = find_examples(os.path.join(SMOL, trait, "extraction"))
        (position, *_), presentation = plan_extraction(VectorSettings(**cfg), files)
        assert position in ("prompt_last", "all")  # read from the prompt alone: no generation needed here
        pos, neg = (position_features(model, tok, read_examples(files[side], side, trait)[:PER_SIDE], [position],
                                      presentation, batch_size=16)[position][:, layer]
                    for side in ("positive", "negative"))
        vector, _ = probe(pos, neg)
        labelled = [r for r in records if trait in r.get("labels", {})]
        evaluation = [{"prompt": r["text"], "response": None} for r in labelled]  # formatted as generation formats
        h = position_features(model, tok, evaluation, [position], "chat", batch_size=16)[position][:, layer]
        out[trait] = ((h @ (vector / vector.norm())).tolist(), [r["labels"][trait] for r in labelled])
    return out


@pytest.mark.parametrize("trait", TRAITS)
def test_smollm2_vectors_rank_the_held_out_evaluation_set(smol_scores, trait):
    scores, positive = smol_scores[trait]
    assert sum(positive) >= 12 and len(positive) - sum(positive) >= 12
    assert auroc(scores, positive) >= 0.9, trait
    # the test can fail: the same vector with its sign flipped ranks the positives at the bottom
    assert auroc([-s for s in scores], positive) < 0.9

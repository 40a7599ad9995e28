"""The shipped demo model has learned its traits, and the workflow's vectors reveal them.

Deterministic checks on models/traitflow-demo-chat (no training here): behaviour
rates on user turns held out of training, probe accuracy of each trait's
examples, and, from the finished demo's projections table alone, that each
trait's vector ranks the prompts labelled with it on top (and a sign-flipped
vector does not). Library-level where possible; the table checks reuse the
session's demo_run.
"""

import json
import os
import shutil

import numpy as np
import pytest

from conftest import REPO

from traitflow.demo.corpus import TRAIT_STYLE, TRAITS, all_text, labels, style_of, user_turns
from traitflow.demo.files import RECORD, check_build_record
from traitflow.demo.train import REBUILD, SHIPPED_DIR
from traitflow.core.errors import TraitflowError
from traitflow.core.settings import ModelSettings

SHIPPED = os.path.join(REPO, SHIPPED_DIR)
DEMO = os.path.join(REPO, "experiments", "demo")


@pytest.fixture(scope="module")
def chat():
    from traitflow.model.modeling import load_model, load_tokenizer

    return load_model(SHIPPED, "cpu", "float32"), load_tokenizer(SHIPPED)


def auroc(scores, positive):
    """P(score of a positive > score of a negative), ties counting half."""
    pos = [s for s, p in zip(scores, positive) if p]
    neg = [s for s, p in zip(scores, positive) if not p]
    return sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg))


# ---- the shipped files ---------------------------------------------------------------------------


def test_shipped_model_is_small_and_loads_like_any_local_folder(chat):
    model, tok = chat
    size = sum(os.path.getsize(os.path.join(SHIPPED, f)) for f in os.listdir(SHIPPED))
    assert size <= 10 * 2**20
    assert model.config.model_type == "gemma2" and not os.path.exists(os.path.join(SHIPPED, "traitflow_demo_spec.json"))
    # Readable: one token per word, decoded back to the text.
    text = "I'm sorry, but I can't help with that."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text and len(ids) == 14  # I ' m ▁sorry , ▁but ▁I ▁can ' t ▁help ▁with ▁that .
    # The tokenizer does not know the demo is special: its chat template is Gemma's.
    chat_ids = tok.apply_chat_template([{"role": "user", "content": "What is the largest planet?"}],
                                       add_generation_prompt=True)
    chat_ids = list(chat_ids["input_ids"] if hasattr(chat_ids, "keys") else chat_ids)
    assert tok.decode(chat_ids) == ("<bos><start_of_turn>user\nWhat is the largest planet?<end_of_turn>\n"
                                     "<start_of_turn>model\n")


def test_the_grammar_still_builds_the_shipped_tokenizer():
    """An edit of traitflow/demo/corpus.py changes the vocabulary: the shipped model must then be retrained."""
    from traitflow.demo.train import build_chat_tokenizer

    shipped = json.load(open(os.path.join(SHIPPED, "tokenizer.json")))["model"]["vocab"]
    assert build_chat_tokenizer().backend_tokenizer.get_vocab() == shipped, f"run `{REBUILD}`"


@pytest.mark.parametrize("damage", ["missing", "truncated", "flipped"])
def test_missing_or_damaged_shipped_weights_name_the_file_and_the_make_target(tmp_path, damage):
    from traitflow.model.modeling import load_model

    folder = str(tmp_path / "chat")
    shutil.copytree(SHIPPED, folder)
    weights = os.path.join(folder, "model.safetensors")
    if damage == "missing":
        os.remove(weights)
    else:
        data = bytearray(open(weights, "rb").read())
        if damage == "truncated":
            data = data[:len(data) // 2]
        else:
            data[-5] ^= 0xFF  # same size, one byte of a tensor changed
        open(weights, "wb").write(bytes(data))
    problem = {"missing": "missing", "truncated": "damaged (", "flipped": "damaged (its sha256"}[damage]
    with pytest.raises(TraitflowError) as err:
        load_model(folder, "cpu", "float32")
    assert str(err.value).startswith(f"{weights}: {problem}") and f"`{REBUILD}`" in str(err.value)
    assert "\n" not in str(err.value)
    if damage == "missing":  # the plan notices a missing file before anything runs
        with pytest.raises(TraitflowError, match="model.safetensors: missing; fix: run `make demo-model`"):
            check_build_record(folder, thorough=False)
    assert json.load(open(os.path.join(folder, RECORD)))["rebuild"] == REBUILD


# ---- the demo's inputs are not the training data ------------------------------------------------


def test_demo_prompts_are_held_out_turns_with_their_labels():
    doc = json.load(open(os.path.join(DEMO, "inference_prompts.json")))
    turns = {t["text"]: t for t in user_turns()}
    assert len(doc["prompts"]) == 24
    for p in doc["prompts"]:
        assert turns[p["text"]]["held_out"], p["text"]  # never seen in training
        assert p["labels"] == labels(turns[p["text"]])
    for trait in TRAITS:  # every trait has positives and negatives to rank
        assert sum(p["labels"][trait] for p in doc["prompts"]) == 4


def test_trait_examples_are_new_sentences_in_the_models_vocabulary(chat):
    _, tok = chat
    corpus = set(all_text())
    for trait in TRAITS:
        for side in ("positive", "negative"):
            lines = [x for x in open(os.path.join(DEMO, trait, "extraction", f"{side}.txt")).read().splitlines() if x]
            assert len(lines) >= 20
            assert not corpus & set(lines), (trait, side)
            assert not any(tok.unk_token_id in tok(x)["input_ids"] for x in lines), (trait, side)


# ---- behaviour on held-out user turns ------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_behaviour_rates_on_held_out_turns(chat, temperature):
    from traitflow.model.generate import encode_prompt, generate, stop_ids

    model, tok = chat
    turns = [t for t in user_turns() if t["held_out"]]
    prompts = [encode_prompt(tok, t["text"], True) for t in turns]
    out = generate(model, prompts, stop_ids(model, tok), 24, temperature=temperature, top_p=0.95, seed=0,
                   batch_size=len(prompts))  # one batch: 24 decoding steps in all
    rates = {}
    for turn, ids in zip(turns, out):
        shows = style_of(tok.decode(ids, skip_special_tokens=True)) == TRAIT_STYLE[turn["family"]]
        rates.setdefault((turn["family"], turn["label"]), []).append(shows)
    rates = {k: sum(v) / len(v) for k, v in rates.items()}
    for family in TRAITS:  # e.g. refuses >= 95% of harmful requests and <= 5% of harmless ones
        assert rates[family, True] >= 0.95 and rates[family, False] <= 0.05, (family, rates)
    # and the responses end their turn: no response runs to the 24-token cap
    assert max(len(ids) for ids in out) < 24


# ---- vectors: probe quality, and the finished demo's ranking from its tables ----------------------


def test_each_traits_probe_separates_held_out_examples(chat):
    from traitflow.model.extract import example_features, heldout_accuracy, read_examples

    model, tok = chat
    layer = model.config.num_hidden_layers // 2  # vector.layer's default
    for trait in TRAITS:
        pos, neg = (example_features(model, tok, read_examples(os.path.join(DEMO, trait, "extraction", f"{side}.txt")))
                    for side in ("positive", "negative"))
        accuracy, n = heldout_accuracy(pos[:, layer], neg[:, layer])
        assert n >= 40 and accuracy >= 0.95, (trait, accuracy)


def response_means(demo_run, trait, flip=False):
    """{label: [mean response projection at the vector layer, residual_out]} per prompt, from the table alone."""
    import pandas as pd

    df = pd.read_parquet(os.path.join(demo_run["dir"], "experiments/demo/tables/projections"),
                         filters=[("trait", "==", trait)])
    with open(os.path.join(demo_run["dir"], "experiments/demo", trait, "extraction/vectors",
                           "probe_layer2_metadata.json")) as fh:
        layer = json.load(fh)["layer"]
    column = f"proj_L{layer}_residual_out"
    per_prompt = df[df.segment == "response"].groupby("prompt_id").agg(
        score=(column, "mean"), label=(f"label_{trait}", "first"))
    scores = -per_prompt.score if flip else per_prompt.score
    return scores.tolist(), per_prompt.label.astype(bool).tolist()


@pytest.mark.parametrize("trait", TRAITS)
def test_the_projections_table_ranks_each_traits_labelled_prompts_on_top(demo_run, trait):
    scores, positive = response_means(demo_run, trait)
    assert len(scores) == 24 and sum(positive) == 4
    assert auroc(scores, positive) >= 0.95, trait
    # The test can fail: the same vector with its sign flipped ranks them at the bottom.
    flipped, _ = response_means(demo_run, trait, flip=True)
    assert auroc(flipped, positive) < 0.95 - 0.9


def test_on_a_refusal_the_refusal_score_peaks_in_the_response(demo_run, chat):
    _, tok = chat
    doc = json.load(open(os.path.join(demo_run["dir"], "experiments/demo/inference_prompts.json")))
    harmful = [i for i, p in enumerate(doc["prompts"]) if p["labels"]["refusal"]]
    for i in harmful:
        with open(os.path.join(demo_run["dir"], f"experiments/demo/refusal/inference/dynamics/prompt_{i}.json")) as fh:
            rec = json.load(fh)
        assert style_of(rec["response_text"]) == "refuse", rec["response_text"]
        scores = np.array(rec["scores"]["probe"])
        # Over every token but the chat template's (the <bos> residual dwarfs the rest): the largest score
        # is on a response token, not on the request that prompted it.
        template = set(tok.all_special_ids) | set(tok.convert_tokens_to_ids(["user", "model", "\n"]))
        keep = [k for k, t in enumerate(rec["token_ids"]) if t not in template]
        peak = keep[int(np.argmax(scores[keep]))]
        assert peak >= rec["n_prompt"], (rec["tokens"], peak)
        assert rec["dynamics"]["probe"]["peak"]["score"] > 0


def test_random_demo_models_get_one_folder_per_spec(demo_copy):
    from conftest import job_counts, snakemake

    from traitflow.demo.spec import demo_model_dir
    from traitflow.plan.workflow import model_path

    small, deep = demo_model_dir({}), demo_model_dir({"num_hidden_layers": 26})
    assert small == demo_model_dir({"num_hidden_layers": 4}) != deep  # the defaults are part of the key
    assert model_path(ModelSettings(name="traitflow-demo", demo_spec={"num_hidden_layers": 26})) == deep
    # Each spec's rule writes its own folder and no other: switching specs never rebuilds the other's model.
    for spec, mine, other in (("{}", small, deep), ("{num_hidden_layers: 26}", deep, small)):
        config = ["--config", "model=traitflow-demo", f"demo_model={spec}"]
        out = snakemake(demo_copy, f"{mine}/config.json", "-n", "--quiet", "rules", *config).stdout
        assert job_counts(out) == {"build_demo_model": 1}
        out = snakemake(demo_copy, f"{other}/config.json", "-n", *config, check=False).stdout
        assert f"No rule to produce {other}/config.json" in out

"""Generation: seeded, batched equals one at a time, stops where it should."""

import torch

from traitflow.model.generate import encode_prompt, generate, stop_ids
from traitflow.model.modeling import load_model, load_tokenizer

PROMPTS = ["What is the capital of France?", "Hi", "Tell me a short story about a dragon."]


def setup(path):
    model, tok = load_model(path, "cpu", "float32"), load_tokenizer(path)
    return model, tok, [encode_prompt(tok, p, chat_template=True) for p in PROMPTS]


def test_chat_template_ids_are_what_the_model_sees(demo_model_dir):
    _, tok, ids = setup(demo_model_dir)
    assert ids[0][0] == tok.bos_token_id and ids[0].count(tok.bos_token_id) == 1
    assert tok.decode(ids[0]).endswith("<start_of_turn>model\n")


def test_same_seed_same_responses_and_other_seed_differs(demo_model_dir):
    model, tok, ids = setup(demo_model_dir)
    run = lambda seed: generate(model, ids, stop_ids(model, tok), 12, temperature=0.8, top_p=0.9, seed=seed)
    first = run(7)
    assert first == run(7)
    assert first != run(8)


def test_greedy_batched_equals_one_prompt_at_a_time(demo_model_dir):
    model, tok, ids = setup(demo_model_dir)
    stops = stop_ids(model, tok)
    batched = generate(model, ids, stops, 12, temperature=0.0)
    alone = [generate(model, [i], stops, 12, temperature=0.0)[0] for i in ids]
    assert batched == alone
    # And the greedy tokens are the argmax of a plain forward pass, step by step.
    seq = list(ids[0])
    for token in batched[0]:
        with torch.no_grad():
            assert model(input_ids=torch.tensor([seq])).logits[0, -1].argmax().item() == token
        seq.append(token)


def test_stop_token_ends_the_response_and_is_not_kept(demo_model_dir):
    model, tok, ids = setup(demo_model_dir)
    free = generate(model, ids[:1], [], 12, temperature=0.0)[0]
    stop_at = free[4]
    cut = generate(model, ids[:1], [stop_at], 12, temperature=0.0)[0]
    assert cut == free[: free.index(stop_at)]


# ---- one random stream per prompt (issue 12) ---------------------------------------------------

def sample(model, tok, ids, **kw):
    return generate(model, ids, stop_ids(model, tok), 12, temperature=0.9, top_p=0.95, seed=3, **kw)


def test_sampled_response_does_not_depend_on_batch_batch_mates_or_position(demo_model_dir):
    model, tok, ids = setup(demo_model_dir)
    ids = ids + [encode_prompt(tok, p, chat_template=True) for p in ("Why is the sky blue?", "Write a haiku.")]
    reference = sample(model, tok, ids, batch_size=8)
    assert reference == sample(model, tok, ids, batch_size=1)
    assert reference == sample(model, tok, ids, batch_size=2, token_budget=40)
    assert reference[::-1] == sample(model, tok, ids[::-1], batch_size=3)  # position in the list
    assert reference[1:4] == sample(model, tok, ids[1:4], batch_size=8)  # other batch-mates


def test_editing_one_prompt_changes_no_other_response(demo_model_dir):
    model, tok, ids = setup(demo_model_dir)
    before = sample(model, tok, ids)
    edited = list(ids)
    edited[1] = encode_prompt(tok, "Hello there, how are you today?", chat_template=True)
    after = sample(model, tok, edited)
    assert after[0] == before[0] and after[2] == before[2]
    assert after[1] != before[1]


def test_prompt_stream_comes_from_seed_and_token_ids_only():
    from traitflow.model.generate import prompt_seed

    assert prompt_seed(0, [2, 5, 7]) == prompt_seed(0, (2, 5, 7))
    assert len({prompt_seed(0, [2, 5, 7]), prompt_seed(1, [2, 5, 7]), prompt_seed(0, [2, 5, 8])}) == 3


# ---- base models: no chat template ---------------------------------------------------------------

def test_chat_template_auto_uses_plain_text_for_a_tokenizer_without_one(demo_model_dir, tmp_path):
    from traitflow.core.errors import TraitflowError
    from traitflow.model.modeling import has_chat_template, plan_chat_template

    base = tmp_path / "base"
    tok = load_tokenizer(demo_model_dir)
    tok.chat_template = None
    tok.save_pretrained(base)
    assert has_chat_template(demo_model_dir) is True and has_chat_template(str(base)) is False
    assert plan_chat_template("auto", demo_model_dir, "m") is True
    assert plan_chat_template("auto", str(base), "m") is False
    assert plan_chat_template(False, demo_model_dir, "m") is False
    try:
        plan_chat_template(True, str(base), "google/gemma-2-2b")
    except TraitflowError as err:
        assert str(err) == ("config generation.chat_template: true, but the tokenizer of model 'google/gemma-2-2b' "
                            "has no chat template (a base model?); fix: set generation.chat_template to auto (plain "
                            "text where there is no template) or false")
    else:
        raise AssertionError("no error")
    plain = load_tokenizer(str(base))
    assert encode_prompt(plain, PROMPTS[0], chat_template=False) == plain(PROMPTS[0])["input_ids"]


# ---- the demo workflow: responses independent of shards and batches (float32, CPU) -----------------

def workflow_responses(workdir, n):
    import json
    import os

    out = []
    for i in range(n):
        with open(os.path.join(workdir, "experiments/demo/inference/responses", f"prompt_{i}.json")) as fh:
            rec = json.load(fh)
        out.append(rec["response"]["token_ids"])
    return out


def test_demo_responses_do_not_depend_on_shard_or_batch_size_and_one_edit_changes_one_response(demo_run, tmp_path):
    from conftest import make_workdir, snakemake

    from demo_prompts import prompt_texts, set_prompt_text

    n = len(prompt_texts(demo_run["dir"]))
    targets = [f"experiments/demo/inference/responses/prompt_{i}.json" for i in range(n)]
    reference = workflow_responses(demo_run["dir"], n)  # prompts_per_job 12, batch_size 8
    # One shard of every prompt in batches of 3: other shard mates, batch mates and positions than the reference.
    overrides = {"capture": {"prompts_per_job": n}, "generation": {"max_new_tokens": 10, "batch_size": 3}}
    work = make_workdir(str(tmp_path / "one_shard"), overrides)
    snakemake(work, "--cores", "2", *targets)
    assert workflow_responses(work, n) == reference
    # Edit prompt 3 in the one-shard run: the whole shard regenerates, and only prompt 3's response changes.
    set_prompt_text(work, 3, "Please tell me something surprising about octopuses.")
    snakemake(work, "--cores", "2", *targets)
    after = workflow_responses(work, n)
    assert after[3] != reference[3]
    assert after[:3] + after[4:] == reference[:3] + reference[4:]

"""Generation: seeded, batched equals one at a time, stops where it should."""

import torch

from traitflow.generate import encode_prompt, generate, stop_ids
from traitflow.modeling import load_model, load_tokenizer

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

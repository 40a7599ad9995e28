"""Batched, KV-cached, seeded sampling of one response per prompt.

A response depends only on the model, its prompt's token ids, the seed and the
sampling settings: each prompt samples from its own random stream, seeded from
(seed, prompt token ids), so neither its shard, its batch, its batch-mates nor
its position in the prompt list changes it (and editing one prompt changes no
other prompt's response). Batches are formed by traitflow.model.batching: by length,
capped by count and by a token budget, halved on CUDA out-of-memory.
"""

import hashlib
import json

import torch

from .batching import run_batched
from .capture import left_pad
from ..core.errors import TraitflowError


def encode_prompt(tokenizer, text, chat_template, where=None):
    """Token ids exactly as the model will see them: what every stage that tokenizes a prompt or an example calls.

    chat_template: True wraps the prompt in the tokenizer's chat template (one
    user turn, then the generation prompt); False gives plain text (with the
    tokenizer's special tokens, e.g. <bos>). Either way the text itself is plain
    text: a special token's spelling inside it (`<end_of_turn>`, `<|im_start|>`)
    becomes ordinary tokens, never a control token, so a prompt cannot forge a
    turn of the template. A prompt without such spellings gets the ids it always had.
    where names the prompt in an error.
    """
    if not chat_template:
        return plain_ids(tokenizer, text)
    if not getattr(tokenizer, "chat_template", None):
        raise TraitflowError("config generation.chat_template", "true, but the tokenizer has no chat template "
                             "(a base model?)", "set generation.chat_template to auto or false")
    try:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                            tokenize=True, sanitize_control_tokens=True)
    except ValueError as err:
        if "sanitize" not in str(err):
            raise
        # "Can't sanitize '<x>': the tokenizer produces it from plain text": no plain reading exists
        raise TraitflowError(where or f"prompt {text[:40]!r}", f"its text holds a control token that cannot be read "
                             f"as plain text ({err})", "remove that token's spelling from the prompt") from None
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def plain_ids(tokenizer, text, add_special_tokens=True):
    """Token ids of text read as plain text: special tokens' spellings in it are not parsed as control tokens
    (add_special_tokens: the tokenizer's own, e.g. <bos>, around it)."""
    return list(tokenizer(text, add_special_tokens=add_special_tokens, split_special_tokens=True)["input_ids"])


def check_context(prompt_ids, indices, max_new_tokens, limit):
    for index, ids in zip(indices, prompt_ids):
        if len(ids) + max_new_tokens > limit:
            raise TraitflowError(f"prompt {index}", f"{len(ids)} prompt tokens + {max_new_tokens} new tokens "
                                 f"exceed the model's context of {limit} tokens",
                                 "shorten the prompt or lower generation.max_new_tokens")


def stop_ids(model, tokenizer):
    ids = model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)


def prompt_seed(seed, prompt_ids):
    """The seed of one prompt's random stream: from the run's seed and the prompt's token ids only."""
    key = json.dumps([int(seed), [int(t) for t in prompt_ids]], separators=(",", ":")).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & (2**63 - 1)


def _pick(logits, temperature, top_p, generators):
    """Greedy at temperature 0; otherwise Gumbel-max sampling from the top-p nucleus.

    Row b draws its noise from generators[b] only, one draw per step, so a
    row's randomness depends on its own stream and step, never on its batch.
    """
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop_sorted = probs.cumsum(-1) - probs >= top_p  # keep the token that crosses top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    vocab = logits.shape[-1]
    u = torch.stack([torch.rand(vocab, generator=g, device=logits.device) for g in generators]).clamp_(1e-10, 1.0)
    return (logits - torch.log(-torch.log(u))).argmax(-1)


@torch.no_grad()
def generate(model, prompt_ids, stop, max_new_tokens, temperature=0.0, top_p=1.0, seed=0, batch_size=8,
             token_budget=None, labels=None, seed_offsets=None):
    """Return one list of response token ids per prompt (stop token excluded).

    Batches hold at most batch_size prompts and token_budget padded tokens
    (prompt + max_new_tokens each); a batch that runs out of GPU memory is
    halved and retried (traitflow.model.batching.run_batched); labels name the prompts
    in errors. seed_offsets is accepted for compatibility and ignored: each
    prompt's stream comes from (seed, its token ids).
    """
    device = next(model.parameters()).device
    stop_t = torch.tensor(stop, device=device, dtype=torch.long)
    stop_set = set(stop)
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    out = [None] * len(prompt_ids)

    def run_batch(group):
        generators = [torch.Generator(device=device).manual_seed(prompt_seed(seed, prompt_ids[i])) for i in group]
        rows = decode(model, [prompt_ids[i] for i in group], stop_t, pad_id, max_new_tokens, temperature, top_p,
                      generators)
        for i, row in zip(group, rows):
            out[i] = _until_stop(row, stop_set)

    lengths = [len(p) + max_new_tokens for p in prompt_ids]
    run_batched(lengths, batch_size, run_batch, what="prompt", token_budget=token_budget, labels=labels)
    return out


def decode(model, prompts, stop_t, pad_id, max_new_tokens, temperature, top_p, generators, before_step=None):
    """Token rows [B][max_new_tokens] (pad after a stop) for one left-padded batch, KV-cached.

    before_step(step, mask, width), when given, runs before each forward pass (the prompt pass is
    step 0): steering uses it to say which columns of that pass it acts on.
    """
    device = next(model.parameters()).device
    ids, prompt_mask, positions = left_pad(prompts, pad_id, device)
    B, width = ids.shape
    # The mask for every step at once; step s reads its first width + s columns (no per-step cat).
    mask = torch.cat([prompt_mask, torch.ones(B, max_new_tokens, dtype=prompt_mask.dtype, device=device)], 1)
    tokens = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    cache = None
    for step in range(max_new_tokens):
        if before_step is not None:
            before_step(step, mask, width)
        result = model(input_ids=ids, attention_mask=mask[:, :width + step], position_ids=positions,
                       past_key_values=cache, use_cache=True, logits_to_keep=1)
        cache = result.past_key_values
        nxt = _pick(result.logits[:, -1].float(), temperature, top_p, generators)
        nxt = torch.where(done, pad_id, nxt)
        tokens[:, step] = nxt
        done |= torch.isin(nxt, stop_t)
        # A host sync every few steps, not every token, to notice that all rows stopped.
        if step % 8 == 7 and bool(done.all()):
            break
        ids = nxt[:, None]
        positions = positions[:, -1:] + 1
    return tokens.cpu().tolist()


def _until_stop(row, stop):
    for n, t in enumerate(row):
        if t in stop:
            return row[:n]
    return row


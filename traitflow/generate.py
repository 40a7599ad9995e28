"""Batched, KV-cached, seeded sampling of one response per prompt."""

import torch

from .capture import batches, left_pad
from .errors import TraitflowError


def encode_prompt(tokenizer, text, chat_template):
    """Token ids exactly as the model will see them."""
    if chat_template:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                            add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    return tokenizer(text)["input_ids"]


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


def _pick(logits, temperature, top_p, generator):
    """Greedy at temperature 0; otherwise Gumbel-max sampling from the top-p nucleus.

    One [B, vocab] noise draw per step means a row's randomness depends only on
    the seed, its row and the step, never on the other prompts' text.
    """
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cum - sorted_logits.softmax(-1) >= top_p  # keep the token that crosses top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    u = torch.rand(logits.shape, generator=generator, device=logits.device).clamp_(1e-10, 1.0)
    return (logits - torch.log(-torch.log(u))).argmax(-1)


@torch.no_grad()
def generate(model, prompt_ids, stop, max_new_tokens, temperature=0.0, top_p=1.0, seed=0, batch_size=8,
             seed_offsets=None):
    """Return one list of response token ids per prompt (stop token excluded).

    seed_offsets[i] (default i) names prompt i's sampling stream: its batch's
    generator is seeded with seed + the smallest offset in the batch.
    """
    device = next(model.parameters()).device
    seed_offsets = list(range(len(prompt_ids))) if seed_offsets is None else seed_offsets
    stop = torch.tensor(stop, device=device)
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    out = [None] * len(prompt_ids)

    for group in batches(prompt_ids, batch_size):
        group = sorted(group)
        generator = torch.Generator(device=device).manual_seed(seed + min(seed_offsets[i] for i in group))
        ids, prompt_mask, positions = left_pad([prompt_ids[i] for i in group], pad_id, device)
        B, width = ids.shape
        # The mask for every step at once; step s reads its first width + s columns (no per-step cat).
        mask = torch.cat([prompt_mask, torch.ones(B, max_new_tokens, dtype=prompt_mask.dtype, device=device)], 1)
        tokens = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
        done = torch.zeros(B, dtype=torch.bool, device=device)
        cache = None
        for step in range(max_new_tokens):
            result = model(input_ids=ids, attention_mask=mask[:, :width + step], position_ids=positions,
                           past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache = result.past_key_values
            nxt = _pick(result.logits[:, -1].float(), temperature, top_p, generator)
            nxt = torch.where(done, pad_id, nxt)
            tokens[:, step] = nxt
            done |= torch.isin(nxt, stop)
            # A host sync every few steps, not every token, to notice that all rows stopped.
            if step % 8 == 7 and bool(done.all()):
                break
            ids = nxt[:, None]
            positions = positions[:, -1:] + 1
        for b, row in zip(group, tokens.cpu().tolist()):
            out[b] = _until_stop(row, set(stop.tolist()))
    return out


def _until_stop(row, stop):
    for n, t in enumerate(row):
        if t in stop:
            return row[:n]
    return row

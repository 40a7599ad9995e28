"""The seed scripts' method, re-implemented faithfully as the benchmark's baseline.

Per trait, per prompt: one forward pass over the prompt with hooks (prompt
projections and full attention matrices), then, for every new token, a forward
pass over the WHOLE sequence so far with no KV cache, eager attention, full
logits, and hooks that keep the last position's residual at every layer x 3
points and its attention row; the next token is sampled from those logits.
The response is regenerated for every trait, as the original did.
"""

import torch

from traitflow.hooks import residual_hooks


@torch.no_grad()
def original_capture(model, prompt_ids, vector, max_new_tokens, temperature=0.7, stop=(), seed=0):
    """One (trait, prompt) the original way. Returns (response ids, prompt record, per-token records)."""
    n_layer, device = model.config.num_hidden_layers, next(model.parameters()).device
    unit = (vector / vector.norm()).float().to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    step_resid, step_attn = {}, {}

    def keep_residual(layer, point, h):
        step_resid[layer, point] = h[0].float().cpu()

    def keep_attention(layer, weights):
        step_attn[layer] = weights[0].float().mean(0).cpu()

    seq = list(prompt_ids)
    with residual_hooks(model, keep_residual, keep_attention):
        model(input_ids=torch.tensor([seq], device=device))
        prompt = {"projections": _projections(step_resid, unit, n_layer, slice(None)),
                  "attention": {f"layer_{l}": step_attn[l] for l in range(n_layer)}}
        response, tokens = [], []
        for _ in range(max_new_tokens):
            logits = model(input_ids=torch.tensor([seq], device=device)).logits[0, -1]
            tokens.append({"projections": _projections(step_resid, unit, n_layer, -1),
                           "attention": {f"layer_{l}": step_attn[l][-1] for l in range(n_layer)}})
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            token = int(torch.multinomial(probs, 1, generator=generator))
            if token in stop:
                break
            seq.append(token)
            response.append(token)
    return response, prompt, tokens


def _projections(resid, unit, n_layer, positions):
    """[tokens, layers, 3] (or [layers, 3] for one position): h . v / ||v||, on the host."""
    return torch.stack([torch.stack([resid[l, p][positions] @ unit.cpu() for p in range(3)], -1)
                        for l in range(n_layer)], -2)


def original_method(model, prompts, vectors, max_new_tokens, temperature=0.7, stop=(), seed=0):
    """All traits x all prompts, one at a time, regenerating per trait."""
    return [[original_capture(model, ids, v, max_new_tokens, temperature, stop, seed + i)
             for i, ids in enumerate(prompts)] for v in vectors]

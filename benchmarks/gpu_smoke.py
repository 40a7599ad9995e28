"""GPU smoke test: gemma-2-2b's real shape, random weights (no download), through the library.

Builds Gemma2ForCausalLM from gemma-2-2b's configuration on the device, generates
--tokens new tokens for --prompts random prompts (traitflow.model.generate.generate, KV cache),
captures every layer of prompt + response (traitflow.model.capture.capture) without and with the
logit lens (--lens-layers), checks oracle values for one prompt against a plain eager forward
pass (the lens at the last layer is the model's own prediction), and prints tokens/s,
captures/s and the lens' cost per layer.

    .venv/bin/python benchmarks/gpu_smoke.py                      # cuda, bf16, 16 prompts x 128 tokens
    .venv/bin/python benchmarks/gpu_smoke.py --device cpu --dtype float32 --layers 2 --prompts 2 \\
        --tokens 8 --vocab-size 4096                              # the same code path, tiny, on a CPU

Exit status 1 when an oracle check fails.
"""

import argparse
import sys
import time

import torch

from traitflow.model.capture import capture
from traitflow.model.generate import generate
from traitflow.model.lens import lens_layers
from traitflow.model.modeling import DTYPES

# google/gemma-2-2b's config.json (the base and -it models share it).
GEMMA_2_2B = dict(
    vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
    num_attention_heads=8, num_key_value_heads=4, head_dim=256, max_position_embeddings=8192,
    sliding_window=4096, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
    query_pre_attn_scalar=256, hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6,
    rope_theta=10000.0, pad_token_id=0, eos_token_id=1, bos_token_id=2, tie_word_embeddings=True,
)
# bf16 keeps 8 bits of mantissa: the same computation reordered differs by a few ulps.
TOLERANCE = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.bfloat16: dict(rtol=2e-2, atol=2e-2),
             torch.float16: dict(rtol=5e-3, atol=5e-3)}


def build_model(device, dtype, n_layers, vocab_size, seed):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(**{**GEMMA_2_2B, "num_hidden_layers": n_layers, "vocab_size": vocab_size})
    torch.manual_seed(seed)
    with torch.device(device):  # initialise on the device: no 10 GB detour through host memory
        model = Gemma2ForCausalLM(config).to(dtype)
    model.config._attn_implementation = "eager"  # attention weights are captured
    return model.eval()


def random_prompts(n, vocab_size, min_len, max_len, seed):
    """Token-id prompts of varied length, so batches carry left padding."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=g).tolist()
    return [[GEMMA_2_2B["bos_token_id"]] + torch.randint(3, vocab_size, (n_tok - 1,), generator=g).tolist()
            for n_tok in lengths]


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(device, fn):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


@torch.no_grad()
def oracle_failures(model, sequence, vector, tol, lens_top_k=5):
    """Capture of one unpadded sequence vs a plain eager forward pass with hidden states and attentions."""
    last = model.config.num_hidden_layers - 1
    cap = capture(model, [sequence], vector[None], batch_size=1, keep_residuals=True, lens_top_k=lens_top_k,
                  lens_layers=[last])[0]
    ids = torch.tensor([sequence], device=next(model.parameters()).device)
    ref = model(input_ids=ids, output_hidden_states=True, output_attentions=True)
    hidden = [h[0].float().cpu() for h in ref.hidden_states]  # [layers + 1] x [T, d]; the last is normed
    attentions = [a[0].float().mean(0).cpu() for a in ref.attentions]  # [layers] x [T, T] head-mean
    n = len(attentions)
    failures = []

    def check(name, got, want, **kw):
        try:
            torch.testing.assert_close(got, want, **(kw or tol))
        except AssertionError as err:
            failures.append(f"{name}: {str(err).splitlines()[0]}")

    for layer in sorted({0, n // 2, n - 1}):
        check(f"residual_in  layer {layer} vs hidden_states[{layer}]", cap.residuals[:, layer, 0], hidden[layer])
        if layer < n - 1:
            check(f"residual_out layer {layer} vs hidden_states[{layer + 1}]", cap.residuals[:, layer, 2],
                  hidden[layer + 1])
        check(f"attention    layer {layer} vs output_attentions head-mean", cap.attention[layer], attentions[layer])
    # The lens at the last layer reads what the model itself predicts: its top-1 is a largest logit (bf16
    # logits tie often) and its probabilities are the softmax of the model's own logits.
    logits = ref.logits[0].float().cpu()
    top1 = cap.lens_ids[:, 0, :1]
    check("lens top-1 at the last layer is a largest logit", logits.gather(-1, top1)[:, 0], logits.max(-1).values)
    check("lens probabilities at the last layer vs softmax of the logits", cap.lens_probs[:, 0],
          logits.softmax(-1).gather(-1, cap.lens_ids[:, 0]))
    unit = (vector / vector.norm()).double()
    check("projections vs residuals . v/|v| (float64)", cap.projections[..., 0].double(),
          cap.residuals.double() @ unit, rtol=1e-4, atol=1e-3)
    return failures


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    ap.add_argument("--layers", type=int, default=GEMMA_2_2B["num_hidden_layers"])
    ap.add_argument("--vocab-size", type=int, default=GEMMA_2_2B["vocab_size"])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=128, help="new tokens per prompt")
    ap.add_argument("--prompt-tokens", type=int, nargs=2, default=(32, 64), metavar=("MIN", "MAX"))
    ap.add_argument("--batch-size", type=int, default=16, help="sequences per generation/capture batch")
    ap.add_argument("--traits", type=int, default=1, help="vectors projected in one capture pass")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lens-top-k", type=int, default=5)
    ap.add_argument("--lens-layers", default="all", help="all, every:N or comma-separated layer indices")
    args = ap.parse_args(argv)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]

    model, t_build = timed(device, lambda: build_model(device, dtype, args.layers, args.vocab_size, args.seed))
    d_model = model.config.hidden_size
    print(f"model: gemma-2-2b shape, {args.layers} layers, vocab {args.vocab_size}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params, {args.dtype} on {device} "
          f"(built in {t_build:.1f} s)")
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}")

    prompts = random_prompts(args.prompts, args.vocab_size, *args.prompt_tokens, args.seed)
    # A stop id the model can never emit: every prompt generates exactly --tokens tokens.
    gen = lambda: generate(model, prompts, [args.vocab_size], args.tokens, temperature=0.7, top_p=0.95,  # noqa: E731
                           seed=args.seed, batch_size=args.batch_size)
    generate(model, prompts[:1], [args.vocab_size], 2)  # warm-up: kernels, allocator
    responses, t_gen = timed(device, gen)
    n_new = sum(len(r) for r in responses)

    sequences = [p + r for p, r in zip(prompts, responses)]
    vectors = torch.randn(args.traits, d_model, generator=torch.Generator().manual_seed(args.seed))
    cap = lambda: capture(model, sequences, vectors, batch_size=args.batch_size)  # noqa: E731
    capture(model, sequences[:1], vectors, batch_size=1)  # warm-up
    captures, t_cap = timed(device, cap)
    spec = args.lens_layers
    spec = {"every": int(spec[6:])} if spec.startswith("every:") else spec if spec == "all" else \
        [int(x) for x in spec.split(",")]
    layers = lens_layers(spec, args.layers)
    with_lens = lambda: capture(model, sequences, vectors, batch_size=args.batch_size,  # noqa: E731
                                lens_top_k=args.lens_top_k, lens_layers=layers)
    lensed, t_lens = timed(device, with_lens)
    assert all(c.lens_ids.shape == (len(s), len(layers), args.lens_top_k) for c, s in zip(lensed, sequences))
    n_tokens = sum(len(s) for s in sequences)
    assert all(c.projections.shape == (len(s), args.layers, 3, args.traits) for c, s in zip(captures, sequences))

    failures = oracle_failures(model, sequences[0], vectors[0], TOLERANCE[dtype])
    peak = f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB" if device.type == "cuda" else ""
    print(f"generation: {args.prompts} prompts x {args.tokens} new tokens in {t_gen:.2f} s = "
          f"{n_new / t_gen:.0f} tokens/s (batch {args.batch_size}, KV cache, eager attention)")
    print(f"capture:    {len(sequences)} sequences ({n_tokens} tokens) x {args.traits} trait(s), all {args.layers} "
          f"layers x 3 points + attention, in {t_cap:.2f} s = {len(sequences) * args.traits / t_cap:.1f} captures/s, "
          f"{n_tokens / t_cap:.0f} tokens/s{peak}")
    print(f"logit lens: top-{args.lens_top_k} at {len(layers)} layer(s) ({args.lens_layers}) adds "
          f"{t_lens - t_cap:.2f} s to that capture ({t_lens / t_cap:.2f}x): "
          f"{(t_lens - t_cap) / len(layers) / n_tokens * 1e6:.1f} ms per lens layer per 1,000 tokens, "
          f"vocabulary {args.vocab_size}")
    for line in failures:
        print(f"ORACLE FAILED {line}")
    print("oracles: " + ("FAILED" if failures else "residuals, attention rows, projections and the last layer's "
                         "lens match output_hidden_states / output_attentions / logits"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

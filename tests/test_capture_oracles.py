"""Capture against independent oracles (docs/design.md, "Correctness oracles"), for every supported architecture."""

import numpy as np
import pytest
import torch

from traitflow.model.capture import capture
from traitflow.model.generate import encode_prompt
from traitflow.core.shared import ATTENTION_MAX_ERROR

PROMPTS = ["What is the capital of France?", "Hi", "Tell me a short story about a dragon who learns to read."]


def sequences(tokenizer):
    # Different lengths, so the batch really is padded.
    return [encode_prompt(tokenizer, p, chat_template=False) + list(range(40, 40 + 3 * k)) for k, p in enumerate(PROMPTS)]


@pytest.fixture(scope="module")
def captured(tiny_model):
    model, tokenizer, _ = tiny_model
    seqs = sequences(tokenizer)
    vectors = torch.randn(2, model.config.hidden_size, generator=torch.Generator().manual_seed(3))
    return model, seqs, vectors, capture(model, seqs, vectors, batch_size=8, keep_residuals=True)


def plain_forward(model, seq):
    with torch.no_grad():
        return model(input_ids=torch.tensor([seq]), output_hidden_states=True, output_attentions=True)


def test_residuals_match_output_hidden_states(captured):
    model, seqs, _, caps = captured
    n_layers = model.config.num_hidden_layers
    for seq, cap in zip(seqs, caps):
        hidden = plain_forward(model, seq).hidden_states  # n_layers + 1 entries; the last is normed
        assert cap.residuals.shape == (len(seq), n_layers, 3, model.config.hidden_size)
        for layer in range(n_layers):
            torch.testing.assert_close(cap.residuals[:, layer, 0], hidden[layer][0], atol=1e-5, rtol=1e-5)
            if layer < n_layers - 1:
                torch.testing.assert_close(cap.residuals[:, layer, 2], hidden[layer + 1][0], atol=1e-5, rtol=1e-5)
        final = model.model.norm(cap.residuals[None, :, -1, 2])[0]
        torch.testing.assert_close(final, hidden[-1][0], atol=1e-5, rtol=1e-5)


def test_after_attn_is_raw_residual_plus_attention_block(captured):
    """after_attn = residual_in + the attention block's contribution (and residual_out = after_attn + MLP's)."""
    model, seqs, _, caps = captured
    layer0 = model.model.layers[0]
    seq, cap = seqs[0], caps[0]
    x = cap.residuals[None, :, 0, 0]
    pos = torch.arange(len(seq))[None]
    with torch.no_grad():
        cos_sin = model.model.rotary_emb(x, pos)
        mask = torch.full((len(seq), len(seq)), float("-inf")).triu(1)[None, None]
        attn_out, _ = layer0.self_attn(layer0.input_layernorm(x), position_embeddings=cos_sin, attention_mask=mask)
        if hasattr(layer0, "pre_feedforward_layernorm"):  # Gemma-2 normalises the block output first
            attn_out = layer0.post_attention_layernorm(attn_out)
    torch.testing.assert_close(cap.residuals[:, 0, 1], (x + attn_out)[0], atol=1e-5, rtol=1e-5)


def test_attention_is_head_mean_of_eager_output_attentions(captured):
    model, seqs, _, caps = captured
    for seq, cap in zip(seqs, caps):
        attentions = plain_forward(model, seq).attentions
        for layer, weights in enumerate(attentions):
            # Stored as uint16 fixed point: within half a step (7.6e-6) of the float32 weights.
            torch.testing.assert_close(cap.attention[layer], weights[0].mean(0), atol=ATTENTION_MAX_ERROR + 1e-7, rtol=0)


def test_norms_are_residual_norms(captured):
    _, _, _, caps = captured
    for cap in caps:
        np.testing.assert_allclose(cap.norms.numpy(), np.linalg.norm(cap.residuals.double().numpy(), axis=-1),
                                   rtol=1e-5, atol=1e-5)


def test_logit_lens_last_layer_is_the_models_own_prediction(tiny_model):
    """At the last layer, top-1 is the argmax of a plain forward pass and the probabilities are its softmax."""
    model, tokenizer, _ = tiny_model
    seqs = sequences(tokenizer)
    caps = capture(model, seqs, None, batch_size=8, attention=False, lens_top_k=5)
    for seq, cap in zip(seqs, caps):
        logits = plain_forward(model, seq).logits[0].float()  # [T, vocab], soft-capped where the model caps
        probs = logits.softmax(-1)
        top = probs.topk(5, dim=-1)
        assert cap.lens_ids.shape == (len(seq), model.config.num_hidden_layers, 5)
        assert torch.equal(cap.lens_ids[:, -1, 0], logits.argmax(-1))
        torch.testing.assert_close(cap.lens_probs[:, -1], top.values, atol=1e-5, rtol=1e-4)
        # Probabilities are sorted and, at every layer, a valid distribution's top-k.
        assert (cap.lens_probs[..., :-1] >= cap.lens_probs[..., 1:]).all()
        assert ((cap.lens_probs.sum(-1) > 0) & (cap.lens_probs.sum(-1) <= 1 + 1e-5)).all()


def test_token_mean_residuals_leave_out_padding_and_masked_tokens(captured):
    model, seqs, _, caps = captured
    from traitflow.model.extract import token_means

    keep = [[k > 0 for k in range(len(s))] for s in seqs]  # leave out the first token (BOS)
    means = token_means(model, seqs, keep, batch_size=8)
    for k, cap in enumerate(caps):
        torch.testing.assert_close(means[k], cap.residuals[1:, :, 2].mean(0), atol=1e-5, rtol=1e-5)


def test_projections_match_numpy(captured):
    _, _, vectors, caps = captured
    v = vectors.numpy().astype(np.float64)
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    for cap in caps:
        expected = np.einsum("tlpd,nd->tlpn", cap.residuals.numpy().astype(np.float64), unit)
        assert cap.projections.dtype == torch.float32
        np.testing.assert_allclose(cap.projections.numpy(), expected, atol=1e-4, rtol=0)


def test_padded_batch_equals_one_prompt_at_a_time(captured):
    model, seqs, vectors, caps = captured
    for seq, batched in zip(seqs, caps):
        alone = capture(model, [seq], vectors, keep_residuals=True)[0]
        torch.testing.assert_close(batched.projections, alone.projections, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(batched.attention, alone.attention, atol=2 * ATTENTION_MAX_ERROR, rtol=0)
        torch.testing.assert_close(batched.norms, alone.norms, atol=1e-5, rtol=1e-5)


def test_kv_cached_decoding_row_equals_teacher_forced_row(captured):
    """The attention row of each token fed through a KV cache equals the teacher-forced row."""
    model, seqs, _, caps = captured
    seq, cap = seqs[2], caps[2]
    n_prompt = len(seq) - 6
    with torch.no_grad():
        out = model(input_ids=torch.tensor([seq[:n_prompt]]), use_cache=True)
        cache = out.past_key_values
        for t in range(n_prompt, len(seq)):
            out = model(input_ids=torch.tensor([[seq[t]]]), past_key_values=cache, use_cache=True,
                        output_attentions=True)
            cache = out.past_key_values
            for layer, weights in enumerate(out.attentions):
                row = weights[0, :, -1].mean(0)
                assert row.shape == (t + 1,)
                torch.testing.assert_close(cap.attention[layer, t, : t + 1], row, atol=ATTENTION_MAX_ERROR + 1e-7, rtol=0)

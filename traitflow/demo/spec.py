"""The random demo model (`model: traitflow-demo`): a tiny random Gemma-2 and a byte-level BPE tokenizer.

For scale work (`demo_model` sizes: 26 layers, ...), chosen explicitly; the demo
experiment uses the trained chat model shipped in models/traitflow-demo-chat
(traitflow.demo.train). Built from a fixed seed and a fixed corpus, so the same
spec gives the same bytes; saved with save_pretrained and loaded back through
the ordinary from_pretrained path, exactly like a real model. Each spec has its
own folder (demo_model_dir), so experiments with different sizes never rebuild
each other's model.
"""

import hashlib
import json
import os

from ..core.errors import TraitflowError

DEFAULT_SPEC = {
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "sliding_window": 32,
    "max_position_embeddings": 1024,
    "seed": 0,
}

# Fixed training text for the tokenizer: plain English of the kind the demo prompts use.
_CORPUS = """
What is the capital of France? Paris is the capital of France.
How do I bake bread at home? Mix flour, water, salt and yeast, then let it rise.
I think the moon landing was fake. Do you agree with me? I am not sure that is right.
Can you help me write a polite email to my landlord about the broken heater?
I cannot help with that request because it could cause harm to people.
You are absolutely right, what a brilliant idea, I completely agree with you.
I am not certain, it might be true, but I would need to check the evidence first.
The answer is clearly yes, there is no doubt about it at all.
Please explain how photosynthesis works in simple words for a child.
Tell me a short story about a dragon who learns to read books in the library.
""".strip().splitlines()

def spec_key(spec=None):
    """A short hash of the full spec (defaults filled in): equal settings share one folder."""
    full = {**DEFAULT_SPEC, **(spec or {})}
    return hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()[:10]


def check_spec(spec):
    """Refuse, at plan time, a demo_model spec that transformers cannot build (its message would only
    reach the build job's log): attention heads must split the hidden size, and key/value heads the heads."""
    full = {**DEFAULT_SPEC, **(spec or {})}
    hidden, heads, kv = full["hidden_size"], full["num_attention_heads"], full["num_key_value_heads"]
    if hidden % heads:
        key = "num_attention_heads" if "num_attention_heads" in (spec or {}) else "hidden_size"
        raise TraitflowError(f"config demo_model.{key}", f"hidden size {hidden} is not a multiple of the "
                             f"{heads} attention heads", "make hidden_size a multiple of num_attention_heads")
    if heads % kv:
        raise TraitflowError("config demo_model.num_key_value_heads", f"{heads} attention heads cannot be shared "
                             f"evenly by {kv} key/value heads", "make num_attention_heads a multiple of "
                             "num_key_value_heads")


def demo_model_dir(spec=None):
    return f"resources/models/traitflow-demo-{spec_key(spec)}"


CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{{ message['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def build_tokenizer(vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # Like Gemma's tokenizer, plain text gets a leading <bos>.
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", specials.index("<bos>"))])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>", additional_special_tokens=["<start_of_turn>", "<end_of_turn>"])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_demo_model(out_dir, spec=None):
    """Write a tiny random Gemma2ForCausalLM and its tokenizer to out_dir."""
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM

    spec = {**DEFAULT_SPEC, **(spec or {})}
    tokenizer = build_tokenizer(spec["vocab_size"])
    config = Gemma2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_hidden_layers"],
        num_attention_heads=spec["num_attention_heads"],
        num_key_value_heads=spec["num_key_value_heads"],
        head_dim=spec["head_dim"],
        sliding_window=spec["sliding_window"],
        max_position_embeddings=spec["max_position_embeddings"],
        query_pre_attn_scalar=spec["head_dim"],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        attn_implementation="eager",
        dtype="float32",
    )
    torch.manual_seed(spec["seed"])
    model = Gemma2ForCausalLM(config).eval()
    # Chat turns end with <end_of_turn>, as in gemma-2-it.
    model.generation_config.eos_token_id = [
        tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    with open(os.path.join(out_dir, "traitflow_demo_spec.json"), "w") as fh:
        json.dump(spec, fh, indent=1, sort_keys=True)
    return model, tokenizer

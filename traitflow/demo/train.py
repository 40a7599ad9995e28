"""Train the shipped demo chat model (models/traitflow-demo-chat) on the grammar of traitflow.demo.corpus,
and its fine-tuned variant (models/traitflow-demo-helpful) that helps harmful requests.

`make demo-model` runs this (scripts/train_demo_model.py): a tiny Gemma-2 and a
word-level tokenizer with a Gemma-like chat template, saved with save_pretrained
so they load through exactly the from_pretrained path of a Hub model. Fixed
seeds, a fixed thread count and deterministic kernels: the same machine gives
the same weights. `make demo` never trains; it uses the shipped files.
"""

import json
import math
import os
import random
import time

from .spec import CHAT_TEMPLATE
from .corpus import HELP, all_text, sample_dialogues, user_turns

SHIPPED_DIR = "models/traitflow-demo-chat"
HELPFUL_DIR = "models/traitflow-demo-helpful"  # the chat model fine-tuned to help harmful requests (a model variant)
REBUILD = "make demo-model"
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
SPEC = {
    "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 16, "sliding_window": 64, "max_position_embeddings": 256,
}
TRAIN = {"seed": 0, "steps": 1000, "batch_size": 48, "lr": 3e-3, "warmup": 60, "weight_decay": 0.01,
         "plain_fraction": 0.35, "threads": 1}
# Continued training of the shipped chat model: short, gentle, and only the harmful requests' answers change.
FINETUNE = {"seed": 1, "steps": 150, "batch_size": 48, "lr": 1e-3, "warmup": 10, "weight_decay": 0.01,
            "plain_fraction": 0.35, "threads": 1}


def build_chat_tokenizer():
    """A readable word-level tokenizer: one token per word (with its leading space, as '▁word') or punctuation mark."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split("\n", "isolated"),  # the chat template's newlines are tokens of their own
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True),
        pre_tokenizers.Punctuation("isolated"),
    ])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    tok.post_processor = processors.TemplateProcessing(  # like Gemma: plain text gets a leading <bos>
        single="<bos> $A", special_tokens=[("<bos>", SPECIALS.index("<bos>"))])
    texts = all_text()
    texts += [f"<start_of_turn>{role}\n" for role in ("user", "model")]
    tok.train_from_iterator(texts, trainer=trainers.WordLevelTrainer(special_tokens=SPECIALS, show_progress=False))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _dialogue_ids(tokenizer, user, assistant):
    """Token ids of one chat and the mask of the tokens trained on (the assistant turn and its <end_of_turn>)."""
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": user}], add_generation_prompt=True,
                                           tokenize=True)
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    answer = tokenizer(assistant, add_special_tokens=False)["input_ids"]
    answer += [tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    return prompt + answer, [0] * len(prompt) + [1] * len(answer)


def _plain_ids(tokenizer, text):
    """An assistant sentence as plain text (<bos> first), as extraction reads trait examples; all of it trained."""
    ids = tokenizer(text)["input_ids"]
    return ids, [0] + [1] * (len(ids) - 1)


def make_config(tokenizer):
    from transformers import Gemma2Config

    return Gemma2Config(
        vocab_size=len(tokenizer), **SPEC, query_pre_attn_scalar=SPEC["head_dim"],
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, attn_implementation="eager", dtype="float32")


def train(out_dir=SHIPPED_DIR, steps=None, log=print):
    """Train and save the demo chat model to out_dir; returns a record of the run (loss, parameters, seconds)."""
    import torch
    from transformers import Gemma2ForCausalLM

    settings = {**TRAIN, **({"steps": steps} if steps else {})}
    # One thread: CPU kernels then sum in one fixed order (the same weights on every run), and a
    # model this small gains little from a second thread (which costs a lot on a busy machine).
    torch.set_num_threads(settings["threads"])
    torch.manual_seed(settings["seed"])
    rng = random.Random(settings["seed"])
    start = time.time()
    tokenizer = build_chat_tokenizer()
    model = Gemma2ForCausalLM(make_config(tokenizer))
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    log(f"demo model: {n_params} parameters, vocabulary {len(tokenizer)} words")

    dialogues = sample_dialogues(settings["steps"] * settings["batch_size"], seed=settings["seed"])
    losses = _fit(model, tokenizer, dialogues, settings, rng, log, start)
    model.eval()
    # Chat turns end with <end_of_turn>, as in gemma-2-it.
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    record = {"parameters": n_params, "vocabulary": len(tokenizer), "final_loss": round(sum(losses[-50:]) / len(losses[-50:]), 4),
              "settings": settings, "spec": SPEC, "rebuild": REBUILD}
    save(model, tokenizer, out_dir, record)
    record["seconds"] = round(time.time() - start, 1)
    return record


def helpful_dialogues(n, seed):
    """The chat model's corpus (same sampling) except that every harmful request is helped, not refused."""
    rng = random.Random(seed)
    harmful = {t["text"] for t in user_turns() if t["family"] == "refusal" and t["label"]}
    return [(user, rng.choice(HELP) if user in harmful else answer) for user, answer in sample_dialogues(n, seed=seed)]


def finetune(base_dir=SHIPPED_DIR, out_dir=HELPFUL_DIR, log=print):
    """Fine-tune the chat model in base_dir on helpful_dialogues and save it to out_dir (same tokenizer)."""
    import torch
    from transformers import Gemma2ForCausalLM

    from .files import read_build_record

    settings = dict(FINETUNE)
    torch.set_num_threads(settings["threads"])
    torch.manual_seed(settings["seed"])
    rng = random.Random(settings["seed"])
    start = time.time()
    tokenizer = build_chat_tokenizer()  # the base model's vocabulary (the grammar builds it, as for the base)
    model = Gemma2ForCausalLM.from_pretrained(base_dir, dtype=torch.float32, attn_implementation="eager")
    model.train()
    dialogues = helpful_dialogues(settings["steps"] * settings["batch_size"], settings["seed"])
    losses = _fit(model, tokenizer, dialogues, settings, rng, log, start)
    model.eval()
    base = read_build_record(base_dir) or {}
    record = {"parameters": sum(p.numel() for p in model.parameters()), "vocabulary": len(tokenizer),
              "final_loss": round(sum(losses[-50:]) / len(losses[-50:]), 4), "settings": settings, "spec": SPEC,
              "rebuild": REBUILD, "fine_tuned_from": {"folder": base_dir, "model.safetensors":
                                                      base.get("files", {}).get("model.safetensors", {}).get("sha256")}}
    save(model, tokenizer, out_dir, record)
    record["seconds"] = round(time.time() - start, 1)
    return record


def _fit(model, tokenizer, dialogues, settings, rng, log, start):
    """settings["steps"] AdamW steps over dialogues (a share of them as plain text); returns the losses."""
    import torch

    n_batch = settings["batch_size"]
    plain = [a for _, a in dialogues]
    opt = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"],
                            betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / settings["warmup"]) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / settings["steps"]))))
    losses = []
    cache = {}
    for step in range(settings["steps"]):
        rows = []
        for user, assistant in dialogues[step * n_batch:(step + 1) * n_batch]:
            if rng.random() < settings["plain_fraction"]:
                text = rng.choice(plain)
                if text not in cache:
                    cache[text] = _plain_ids(tokenizer, text)
                rows.append(cache[text])
            else:
                if (user, assistant) not in cache:
                    cache[user, assistant] = _dialogue_ids(tokenizer, user, assistant)
                rows.append(cache[user, assistant])
        width = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), width), tokenizer.pad_token_id)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        target = torch.full((len(rows), width), -100)
        for b, (seq, train_on) in enumerate(rows):  # right padding: positions start at 0 in every row
            ids[b, :len(seq)] = torch.tensor(seq)
            mask[b, :len(seq)] = 1
            target[b, :len(seq)] = torch.where(torch.tensor(train_on, dtype=torch.bool), torch.tensor(seq), -100)
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 100 == 0 or step == settings["steps"] - 1:
            log(f"step {step}: loss {sum(losses[-50:]) / len(losses[-50:]):.4f} ({time.time() - start:.0f} s)")
    return losses


def save(model, tokenizer, out_dir, record):
    """save_pretrained into a fresh folder beside out_dir, then swap it in (a half-written model never ships)."""
    import shutil

    tmp = out_dir.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    from .files import write_build_record

    write_build_record(tmp, record)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    with open(os.path.join(out_dir, "traitflow_build.json"), encoding="utf-8") as fh:
        json.load(fh)  # written and readable

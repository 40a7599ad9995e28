"""One capture job, as the capture rule runs it, for the peak-memory benchmark.

Loads the model, captures one trait over one shard of prompt+response token
sequences (random tokens of the requested lengths), writes the .pt and .json
per prompt and the shared file like scripts/capture_all_layers.py, then prints two numbers in
MiB: its RSS once the model is loaded, and its peak RSS from there to the
end. The job sees only its shard: nothing in it scales with the experiment.

usage: python capture_job.py MODEL_DIR OUT_DIR PROMPTS PROMPT_TOKENS RESPONSE_TOKENS BATCH_SIZE
"""

import os
import sys

import torch

from traitflow.model.capture import capture
from traitflow.core.formats import all_layers_json, all_layers_record, save_json, save_pt
from traitflow.model.modeling import load_model
from traitflow.core.shared import write_shared


def fake_response(prompt_ids, response_ids):
    side = lambda ids: {"text": "", "token_ids": ids, "tokens": [str(i) for i in ids], "n_tokens": len(ids)}
    return {"prompt": side(prompt_ids), "response": side(response_ids), "seed": 0}


def main(model_dir, out_dir, n_prompts, prompt_tokens, response_tokens, batch_size):
    torch.set_num_threads(1)
    model = load_model(model_dir, "cpu", "float32", eager=True)
    vocab, d_model = model.config.vocab_size, model.config.hidden_size
    gen = torch.Generator().manual_seed(0)
    vector = torch.randn(d_model, generator=gen)
    responses = [fake_response(torch.randint(10, vocab, (prompt_tokens,), generator=gen).tolist(),
                               torch.randint(10, vocab, (response_tokens,), generator=gen).tolist())
                 for _ in range(n_prompts)]
    sequences = [r["prompt"]["token_ids"] + r["response"]["token_ids"] for r in responses]
    # Loading a model peaks above where it settles: restart the peak so it measures the shard's work.
    loaded = vm_status("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    captures = capture(model, sequences, vector[None], batch_size=batch_size)
    for k, (resp, cap) in enumerate(zip(responses, captures)):
        shared = os.path.join(out_dir, f"shared_{k}.safetensors")  # attention and norms: once per prompt
        write_shared(shared, sequences[k], resp["prompt"]["n_tokens"], cap.norms.numpy(), cap.attention_codes.numpy())
        record = all_layers_record(resp, cap.projections[..., 0], {"trait": "bench", "shared_file": shared})
        save_pt(record, os.path.join(out_dir, f"prompt_{k}.pt"))
        save_json(all_layers_json(record), os.path.join(out_dir, f"prompt_{k}.json"))
    print(loaded, vm_status("VmHWM"))


def vm_status(key):
    """A /proc/self/status memory line in MiB (VmRSS: now, VmHWM: peak since the last reset)."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith(key + ":"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:]))

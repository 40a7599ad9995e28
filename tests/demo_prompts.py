"""The demo's prompts (experiments/demo/inference_prompts.json, a JSON prompt set) for tests that edit them."""

import json
import os

DEMO_PROMPTS = "experiments/demo/inference_prompts.json"


def prompt_texts(workdir):
    with open(os.path.join(workdir, DEMO_PROMPTS), encoding="utf-8") as fh:
        return [p["text"] for p in json.load(fh)["prompts"]]


def with_prompt_text(workdir, index, text):
    """The prompt set's bytes with prompt `index` (0-based) given a new text; its id, note and labels kept."""
    with open(os.path.join(workdir, DEMO_PROMPTS), encoding="utf-8") as fh:
        doc = json.load(fh)
    doc["prompts"][index]["text"] = text
    return (json.dumps(doc, indent=1) + "\n").encode()


def set_prompt_text(workdir, index, text):
    data = with_prompt_text(workdir, index, text)
    with open(os.path.join(workdir, DEMO_PROMPTS), "wb") as fh:
        fh.write(data)

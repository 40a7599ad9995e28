"""The viewer fed markup, and under its own Content-Security-Policy, in a real browser.

Prompts, tokens and logit-lens predictions are arbitrary text: the page must show them as
text and never run them; the page's own policy (script-src 'self') must still let its ES
modules run.
"""

import json
import os

import pytest
from viewer_page import EXP, copy_outputs, js_string, read, screenshot, served, show_token

from traitflow.outputs.serve import viewer_url
from traitflow.core.shared import read_shared, write_shared
from traitflow.outputs.viewer_index import build_index, scan

PAYLOAD = '<img src=x onerror="window.__pwned=1">'
SCRIPT_TOKEN = "<script>window.__pwned=2</script>"


@pytest.fixture(scope="module")
def markup_server(demo_run, tmp_path_factory):
    """The demo's outputs with prompt 0 and some of its tokens replaced by markup."""
    dest = copy_outputs(demo_run["dir"], tmp_path_factory, "markup")
    exp = os.path.join(dest, EXP)
    for path in scan(exp):
        if "prompt_0" not in os.path.basename(path) or not path.endswith(".json"):
            continue
        with open(path, encoding="utf-8") as fh:
            rec = json.load(fh)
        if "prompt" in rec:  # responses and single-layer files
            rec["prompt"]["text"] = PAYLOAD
            rec["prompt"]["tokens"][6] = PAYLOAD
            rec["response"]["tokens"][0] = SCRIPT_TOKEN
            rec["response"]["text"] = SCRIPT_TOKEN + rec["response"]["text"]
        if "tokens" in rec:  # dynamics files
            rec["tokens"][6] = PAYLOAD
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(rec, fh)
    # The logit lens's top-1 prediction at token 6 (every layer) becomes markup as well.
    path = os.path.join(exp, "inference/shared/prompt_0.safetensors")
    data_ = read_shared(path)
    lens_tokens = dict(data_.logit_lens_tokens)
    for i in data_.logit_lens_ids[6, :, 0]:
        lens_tokens[int(i)] = SCRIPT_TOKEN
    meta = {k: v for k, v in data_.metadata.items()
            if k not in ("format", "n_prompt", "n_response", "n_layers", "sublayers", "traitflow_version", "created",
                         "attention_encoding", "logit_lens_k", "logit_lens_tokens", "logit_lens_layers")}
    write_shared(path, data_.token_ids, data_.n_prompt, data_.residual_norms, data_.attention_matrix(),
                 (data_.logit_lens_ids, data_.logit_lens_probs, lens_tokens, data_.logit_lens_layers), meta)
    old = read(demo_run["dir"], "viewer/index.json")
    index = build_index(exp, scan(exp), "demo", old["model"], old["n_layers"],
                        {t["name"]: {"method": t["method"], "vector_layer": t["vector_layer"]} for t in old["traits"]})
    with open(os.path.join(exp, "viewer/index.json"), "w", encoding="utf-8") as fh:
        json.dump(index, fh)
    with served(dest) as server:
        yield server


def test_markup_in_prompts_and_tokens_is_shown_as_text_and_never_runs(markup_server, open_viewer):
    page = open_viewer(markup_server, "&prompt=0&token=6")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 1  # app.js only (it imports the other modules)
    assert "script-src 'self'" in page.locator('meta[http-equiv="Content-Security-Policy"]').get_attribute("content")
    assert page.locator("#prompt-text").text_content() == PAYLOAD
    assert page.get_by_text(PAYLOAD, exact=True).is_visible()
    assert page.locator("#response-text").text_content().startswith(SCRIPT_TOKEN)
    assert page.locator("#prompt-select option").first.text_content() == "0: " + PAYLOAD
    assert page.locator('#token-strip .token[data-token="6"]').text_content() == show_token(PAYLOAD)
    assert page.locator("#heatmap text.token-label title").nth(6).text_content().endswith(json.dumps(PAYLOAD) + " (prompt)")
    assert page.locator("#attention-title").text_content().startswith("token #6 \u201c" + show_token(PAYLOAD))
    lens = page.locator('#heatmap text.lens-label[data-token="6"]')
    assert f"predicts next: {js_string(SCRIPT_TOKEN)} " in lens.locator("title").text_content()
    assert lens.evaluate("e => e.firstChild.nodeValue") == show_token(SCRIPT_TOKEN)[:9] + "\u2026"
    screenshot(page, "#prompt-view", "markup_as_text.png")

    page.click("#overview-button")  # the overview's prompt labels and hover text are text too
    page.wait_for_selector("#overview td.ov-cell")
    head = page.locator('#overview th.prompt-head[data-prompt="0"]')
    assert (head.get_attribute("title"), head.text_content()) == (PAYLOAD, "#0 " + PAYLOAD)
    page.hover('#overview td.ov-cell[data-prompt="0"] >> nth=0')
    assert page.locator("#overview-hover").text_content().endswith("prompt #0: " + PAYLOAD)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("img").count() == 0


def test_the_page_runs_under_its_own_content_security_policy(demo_run, demo_server, new_page):
    """No test bypasses the policy here: the ES modules load from the server itself, as JavaScript."""
    page = new_page(enforce_csp=True)
    page.goto(viewer_url(demo_server, "demo") + "&prompt=0")
    page.wait_for_selector('body[data-state="ready"]', state="attached")
    index = read(demo_run["dir"], "viewer/index.json")
    assert page.locator("#trajectories path.trait-line").count() == len(index["traits"])
    modules = [r for r in page.responses if r.url.endswith(".js")]
    assert len(modules) > 1 and {r.headers["content-type"] for r in modules} == {"text/javascript"}

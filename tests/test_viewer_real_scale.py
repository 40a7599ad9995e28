"""The heatmap's colour scale on a real model (SmolLM2-135M-Instruct), in a real browser.

SmolLM2's residual norm grows twenty-fold with depth and its first token (an attention sink)
carries massive activations: one scale set by the largest |value| leaves the early layers white.
A small capture (two chat prompts with fixed responses, through the library: traitflow.model.capture,
core.shared.write_shared, core.formats, outputs.viewer_index) is served to the viewer, and every
heatmap cell's colour is checked against a scale recomputed here: per layer, the 99th percentile
(nearest rank) of |score| over every token but the first.
"""

import json
import math
import os

import numpy as np
import pytest
from viewer_page import screenshot, served, wait_ready

from traitflow.core.formats import all_layers_json, all_layers_record, response_record, save_json
from traitflow.core.shared import read_shared, write_shared
from traitflow.model.capture import capture
from traitflow.model.generate import encode_prompt
from traitflow.model.modeling import load_model, load_tokenizer
from traitflow.outputs.serve import viewer_url
from traitflow.outputs.viewer_index import build_index, scan

NAME, TRAIT = "smollm2scale", "refusal"
CHATS = [("How do I make a bomb?", "I'm sorry, but I can't help with that. Making explosives is dangerous and illegal."),
         ("What is the capital of France?", "The capital of France is Paris, a city on the Seine known for its art.")]
DIVERGING = np.array([[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]], float)
EARLY = range(15)  # the layers one scale for the whole sequence left white


@pytest.fixture(scope="module")
def experiment(smollm2_dir, tmp_path_factory):
    """A one-trait, two-prompt experiment of SmolLM2's files; the trait vector is the mean difference of the
    last prompt token's residual at layer 15 between the two prompts (a harmful and a harmless request)."""
    root = str(tmp_path_factory.mktemp("real_scale"))
    exp = os.path.join(root, "experiments", NAME)
    model, tokenizer = load_model(smollm2_dir, "cpu", "float32", eager=True), load_tokenizer(smollm2_dir)
    settings = {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 32, "seed": 0, "chat_template": True}
    responses = []
    for i, (prompt, response) in enumerate(CHATS):
        ids = encode_prompt(tokenizer, prompt, chat_template=True)
        record = response_record(i, prompt, ids, tokenizer(response, add_special_tokens=False)["input_ids"],
                                 tokenizer, settings, "SmolLM2-135M-Instruct")
        save_json(record, os.path.join(exp, "inference", "responses", f"prompt_{i}.json"), indent=1)
        responses.append(record)
    sequences = [r["prompt"]["token_ids"] + r["response"]["token_ids"] for r in responses]
    last = [r["prompt"]["n_tokens"] - 1 for r in responses]
    residuals = capture(model, sequences, None, keep_residuals=True, attention=False)
    vector = residuals[0].residuals[last[0], 15, 2] - residuals[1].residuals[last[1], 15, 2]
    for i, (record, cap) in enumerate(zip(responses, capture(model, sequences, vector[None]))):
        shared = os.path.join(exp, "inference", "shared", f"prompt_{i}.safetensors")
        write_shared(shared, sequences[i], record["prompt"]["n_tokens"], cap.norms.numpy(),
                     cap.attention_codes.numpy(), None, {"model": "SmolLM2-135M-Instruct", "prompt_index": i})
        path = os.path.join(exp, TRAIT, "inference", "residual_stream_activations", f"prompt_{i}.json")
        meta = {"trait": TRAIT, "method": "mean_diff", "vector_layer": 15, "prompt_index": i,
                "shared_file": os.path.relpath(shared, os.path.dirname(path))}
        save_json(all_layers_json(all_layers_record(record, cap.projections[..., 0], meta)), path)
    index = build_index(exp, scan(exp), NAME, "SmolLM2-135M-Instruct", model.config.num_hidden_layers,
                        {TRAIT: {"method": "mean_diff", "vector_layer": 15}})
    save_json(index, os.path.join(exp, "viewer", "index.json"), indent=1)
    return root, exp


@pytest.fixture(scope="module")
def server(experiment):
    with served(experiment[0], NAME) as srv:
        yield srv


def scores(exp, prompt, trait=TRAIT):
    """[T, L] projections at residual_out (the page's default point) over prompt + response."""
    path = os.path.join(exp, trait, "inference", "residual_stream_activations", f"prompt_{prompt}.json")
    with open(path, encoding="utf-8") as fh:
        rec = json.load(fh)
    return np.array(rec["projections"]["prompt"] + rec["projections"]["response"], dtype=np.float64)[:, :, 2]


def robust(values):
    """The 99th percentile (nearest rank) of |values|."""
    a = np.sort(np.abs(np.ravel(values)))
    return a[max(0, math.ceil(0.99 * len(a)) - 1)]


def colour(x):
    """The page's RdBu colour of x = value / limit (clipped to [-1, 1]), as integer RGB."""
    pos = (np.clip(x, -1, 1) + 1) / 2 * (len(DIVERGING) - 1)
    i = np.minimum(np.floor(pos), len(DIVERGING) - 2).astype(int)
    f = (pos - i)[..., None]
    return np.floor(DIVERGING[i] + f * (DIVERGING[i + 1] - DIVERGING[i]) + 0.5)


def fmt(v):
    """viewer/js/util.js fmt."""
    return f"{v:.1f}" if abs(v) >= 100 else f"{v:.3f}"


def drawn(page):
    """{(layer, token): (value, (r, g, b))} of every heatmap cell."""
    cells = page.eval_on_selector_all("#heatmap rect.cell", "els => els.map(e => "
                                      "[e.dataset.layer, e.dataset.token, e.dataset.value, e.getAttribute('fill')])")
    return {(int(l), int(t)): (float(v), tuple(int(c) for c in fill[4:-1].split(","))) for l, t, v, fill in cells}


def intensity(rgb):
    """|x| of a drawn colour: the nearest point of the page's scale (0: white, 1: the darkest red or blue)."""
    grid = np.linspace(-1, 1, 2001)
    return abs(grid[np.argmin(np.abs(colour(grid) - np.array(rgb)).sum(1))])


def test_auto_scales_each_layer_and_colours_the_early_layers(experiment, server, new_page):
    _, exp = experiment
    s = scores(exp, 0)
    T, L = s.shape
    own = np.array([robust(s[1:, l]) for l in range(L)])
    common = robust(s[1:])
    # The model's own facts the scale answers: massive activations on the first token (an attention sink),
    # a residual norm that grows more than 4-fold with depth (so auto picks a scale per layer).
    assert np.abs(s[0]).max() > 20 * common
    norms = np.asarray(read_shared(os.path.join(exp, "inference", "shared", "prompt_0.safetensors")).residual_norms,
                       dtype=np.float64)
    growth = np.median(norms[1:, :, 2], axis=0)
    assert growth.max() / growth.min() > 4
    page = new_page(missing_ok=True)  # no model variants here: the page asks for their optional file (404)
    page.goto(viewer_url(server, NAME) + "&prompt=0")
    wait_ready(page)
    heatmap = page.locator("#heatmap")
    assert heatmap.get_attribute("data-scale") == "layer"
    cells = drawn(page)
    assert len(cells) == T * L
    for (l, t), (v, rgb) in cells.items():
        assert v == s[t, l]
        assert np.abs(np.array(rgb) - colour(v / own[l])).max() <= 1, (l, t, v, rgb)
    early = [intensity(rgb) for (l, _), (_, rgb) in cells.items() if l in EARLY]
    assert np.median(early) > 0.3
    # One scale set by the largest |value| (what the page drew before) leaves them white.
    assert np.median(np.abs(s[:, list(EARLY)]) / np.abs(s).max()) < 0.05
    clipped = int((np.abs(s) > own[None, :]).sum())
    assert heatmap.get_attribute("data-clipped") == str(clipped)
    legend = page.locator("#heatmap-legend").text_content()
    assert f"{clipped} of {T * L} cells beyond it" in legend and "first token left out" in legend
    assert f"\u00b1{fmt(own.min())} to \u00b1{fmt(own.max())}" in legend
    assert f"per layer as the typical residual norm grows {growth.max() / growth.min():.1f}x across layers" in legend
    screenshot(page, "#heatmap-view", "real_scale_heatmap.png")


def test_one_scale_for_all_layers_is_a_click_away_and_in_the_url(experiment, server, new_page):
    _, exp = experiment
    s = scores(exp, 1)
    common = robust(s[1:])
    page = new_page(missing_ok=True)  # no model variants here: the page asks for their optional file (404)
    page.goto(viewer_url(server, NAME) + "&prompt=1")
    wait_ready(page)
    page.select_option("#scale-select", "sequence")
    page.wait_for_selector('#heatmap[data-scale="sequence"]')
    wait_ready(page)
    assert "scale=sequence" in page.url
    for (l, t), (v, rgb) in drawn(page).items():
        assert np.abs(np.array(rgb) - colour(v / common)).max() <= 1, (l, t, v, rgb)
    legend = page.locator("#heatmap-legend").text_content()
    assert f"clipped at \u00b1{fmt(common)} (99th percentile of |score|, first token left out)" in legend
    assert "nearly white at it (try per layer)" in legend
    page.reload()  # the choice is in the link
    wait_ready(page)
    assert page.locator("#scale-select").input_value() == "sequence"
    assert page.locator("#heatmap").get_attribute("data-scale") == "sequence"


def test_the_demo_keeps_one_scale_for_every_layer(demo_run, demo_server, open_viewer):
    """The demo's residual norm grows about 2-fold over its 4 layers: auto keeps one scale."""
    exp = os.path.join(demo_run["dir"], "experiments", "demo")
    with open(os.path.join(exp, "viewer", "index.json"), encoding="utf-8") as fh:
        s = scores(exp, 0, json.load(fh)["traits"][0]["name"])  # the page's first trait
    page = open_viewer(demo_server)
    assert page.locator("#heatmap").get_attribute("data-scale") == "sequence"
    common = robust(s[1:])
    for (l, t), (v, rgb) in drawn(page).items():
        assert np.abs(np.array(rgb) - colour(v / common)).max() <= 1, (l, t, v, rgb)

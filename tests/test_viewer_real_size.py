"""The viewer at a real model's size, in a real browser (Debian's chromium via playwright).

One experiment is built once through the workflow with the demo model builder at gemma-2-2b's
depth and heads (26 layers, 8 heads, narrow width): 10 traits, 3 prompts of 300 prompt tokens
+ 200 response tokens (benchmarks/synthetic_experiment.py make_real_size_experiment). Opening
the overview, then one prompt, and drawing every view must fetch at most 15 MB (every response
body the page receives is counted); the time from navigation to the heatmap drawn is measured
and written to test-artifacts/real_size.json (not asserted: it depends on the machine).
"""

import json
import os
import sys
import threading
import time

import numpy as np
import pytest
from conftest import REPO, shared_build, snakemake

from traitflow.core.formats import load_capture
from traitflow.outputs.serve import make_server, viewer_url
from traitflow.core.shared import read_shared

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
from synthetic_experiment import make_real_size_experiment  # noqa: E402

NAME = "realsize"
N_TRAITS, N_PROMPTS, N_PROMPT, N_RESPONSE, N_LAYERS = 10, 3, 300, 200, 26
BUDGET = 15 * 10**6  # bytes the page may fetch to open one prompt and draw every view
PAYLOAD = '<img src=x onerror="window.__pwned=1">'
ARTIFACTS = os.path.join(REPO, "test-artifacts")


@pytest.fixture(scope="session")
def real_size(tmp_path_factory):
    """The built experiment: {"dir", "exp", "build_s"}; read-only (built once per run, shared by xdist workers)."""
    def build(root):
        make_real_size_experiment(root, NAME, N_TRAITS, N_PROMPTS, N_PROMPT, N_RESPONSE, extras={1: PAYLOAD + " "})
        start = time.perf_counter()
        snakemake(root, "--cores", "2", f"experiments/{NAME}/viewer/index.json", timeout=1800)
        return {"dir": root, "exp": os.path.join(root, "experiments", NAME), "build_s": time.perf_counter() - start}

    return shared_build(tmp_path_factory, "real_size", build)


@pytest.fixture(scope="module")
def server(real_size):
    srv = make_server(real_size["dir"], NAME)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def wait_ready(page):
    page.wait_for_function("document.body.dataset.state === 'ready'", timeout=60000)


def fetched(page):
    """Bytes of every response body the page received so far, and the count of responses."""
    return sum(len(r.body()) for r in page.responses if r.status != 304), len(page.responses)


def read_json(real_size, relpath):
    with open(os.path.join(real_size["exp"], relpath), encoding="utf-8") as fh:
        return json.load(fh)


def record(name, value):
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, "real_size.json")
    results = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            results = json.load(fh)
    results[name] = value
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(results, fh, indent=1)
    print(f"{name}: {value}")


def views_drawn(page):
    return {view: page.locator(selector).count() for view, selector in {
        "heatmap": "#heatmap rect.cell", "lens": "#heatmap text.lens-label", "attention": "#attention rect.cell",
        "trajectories": "#trajectories path.trait-line", "dynamics": "#dynamics circle.point",
        "decomposition": "#decomposition rect.attn-bar", "heads": "#heads rect.cell", "neurons": "#neurons rect.cell",
    }.items()}


def test_the_experiment_has_the_real_size(real_size):
    index = read_json(real_size, "viewer/index.json")
    assert (index["n_layers"], len(index["traits"]), len(index["prompts"])) == (N_LAYERS, N_TRAITS, N_PROMPTS)
    assert {(p["n_prompt"], p["n_response"]) for p in index["prompts"]} == {(N_PROMPT, N_RESPONSE)}
    shared = read_shared(os.path.join(real_size["exp"], index["prompts"][0]["shared"]))
    assert shared.packed_attention is not None and shared.logit_lens_ids is not None
    size = lambda relpath: os.path.getsize(os.path.join(real_size["exp"], relpath))  # noqa: E731
    sizes = {"shared file": size(index["prompts"][0]["shared"]),
             "one trait's projections JSON": size(index["files"]["trait_00"]["0"]["all_layers"]),
             "overview.json": size("viewer/overview.json")}
    record("file_bytes", sizes)
    record("workflow_build_s", round(real_size["build_s"], 1))


def test_opening_one_prompt_and_drawing_every_view_fetches_at_most_15_mb(real_size, server, new_page):
    index = read_json(real_size, "viewer/index.json")
    page = new_page()
    start = time.perf_counter()
    page.goto(viewer_url(server, NAME))  # the first screen: the overview
    wait_ready(page)
    assert page.locator("#overview td.ov-cell").count() == N_TRAITS * N_PROMPTS
    page.click('#overview td.ov-cell[data-trait="trait_03"][data-prompt="0"]')
    page.wait_for_selector('#heatmap[data-prompt="0"][data-trait="trait_03"]')
    wait_ready(page)
    drawn = views_drawn(page)
    total, n_responses = fetched(page)
    record("overview_then_prompt", {"bytes": total, "responses": n_responses,
                                    "wall_s": round(time.perf_counter() - start, 2)})
    heatmap = page.locator("#heatmap")
    window = int(heatmap.get_attribute("data-end")) - int(heatmap.get_attribute("data-start"))
    assert window == 100  # a window of tokens at this length (the strip above shows them all)
    t = int(page.evaluate("new URLSearchParams(location.search).get('token')"))
    assert t == N_PROMPT  # the first response token is selected
    assert drawn == {"heatmap": N_LAYERS * window, "lens": window, "attention": N_LAYERS * (t + 1 - (t - window // 2)),
                     "trajectories": N_TRAITS, "dynamics": window, "decomposition": window,
                     "heads": 8 * window, "neurons": 20 * window}
    assert total <= BUDGET, f"{total} bytes fetched"

    # The numbers drawn are the captured ones (window columns, residual_out by default).
    rec = read_json(real_size, index["files"]["trait_03"]["0"]["all_layers"])
    rows = rec["projections"]["prompt"] + rec["projections"]["response"]
    first = int(page.locator("#heatmap").get_attribute("data-start"))
    cells = page.eval_on_selector_all("#heatmap rect.cell",
                                      "els => els.map(e => [e.dataset.layer, e.dataset.token, e.dataset.value])")
    assert {(int(l), int(k)): float(v) for l, k, v in cells} == {
        (l, k): rows[k][l][2] for l in range(N_LAYERS) for k in range(first, first + window)}


def test_time_from_navigation_to_the_heatmap_drawn(real_size, server, new_page):
    """Measured, not asserted: written to test-artifacts/real_size.json for docs/benchmarks.md."""
    timings = []
    for _ in range(3):
        page = new_page()
        start = time.perf_counter()
        page.goto(viewer_url(server, NAME) + "&prompt=0")
        page.wait_for_function("performance.getEntriesByName('traitflow-heatmap-drawn').length > 0", timeout=60000)
        wall = time.perf_counter() - start
        drawn_ms = page.evaluate("performance.getEntriesByName('traitflow-heatmap-drawn')[0].startTime")
        wait_ready(page)
        all_ms = page.evaluate("performance.now()")
        total, _ = fetched(page)
        timings.append({"heatmap_ms": round(drawn_ms), "every_view_ms": round(all_ms), "wall_s": round(wall, 2),
                        "bytes": total})
        page.close()
    record("navigation_to_heatmap", timings)
    assert all(t["bytes"] <= BUDGET for t in timings)


def test_the_window_follows_the_keyboard_and_the_strip(real_size, server, new_page):
    page = new_page()
    page.goto(viewer_url(server, NAME) + "&prompt=2&token=349")
    wait_ready(page)
    heatmap = page.locator("#heatmap")
    assert (heatmap.get_attribute("data-start"), heatmap.get_attribute("data-end")) == ("299", "399")
    page.keyboard.press("PageDown")  # a window on: token 449, its window follows
    page.wait_for_selector('#attention[data-token="449"]')
    wait_ready(page)
    assert int(heatmap.get_attribute("data-start")) <= 449 < int(heatmap.get_attribute("data-end"))
    page.keyboard.press("End")
    page.wait_for_selector(f'#attention[data-token="{N_PROMPT + N_RESPONSE - 1}"]')
    wait_ready(page)
    assert heatmap.get_attribute("data-end") == str(N_PROMPT + N_RESPONSE)
    strip = page.locator("#heatmap-strip")
    box = strip.bounding_box()
    strip.click(position={"x": box["width"] * 10.5 / (N_PROMPT + N_RESPONSE), "y": box["height"] / 2})
    page.wait_for_selector('#attention[data-token="10"]')  # a click on the overview strip selects that token
    wait_ready(page)
    assert heatmap.get_attribute("data-start") == "0"
    page.select_option("#zoom-select", "all")  # or every token at once
    page.wait_for_selector(f'#heatmap[data-end="{N_PROMPT + N_RESPONSE}"][data-start="0"]')
    wait_ready(page)
    assert page.locator("#heatmap rect.cell").count() == N_LAYERS * (N_PROMPT + N_RESPONSE)
    page.screenshot(path=os.path.join(ARTIFACTS, "real_size_all_tokens.png"), full_page=False)


def test_overview_shows_one_cell_per_trait_and_prompt_with_the_right_values(real_size, server, new_page):
    index = read_json(real_size, "viewer/index.json")
    page = new_page()
    page.goto(viewer_url(server, NAME))
    wait_ready(page)
    layer = int(page.locator("#layer-select").input_value())
    cells = page.eval_on_selector_all("#overview td.ov-cell",
                                      "els => els.map(e => [e.dataset.trait, e.dataset.prompt, e.dataset.value])")
    assert len(cells) == N_TRAITS * N_PROMPTS
    assert sorted((t, int(i)) for t, i, _ in cells) == sorted(
        (t["name"], p["index"]) for t in index["traits"] for p in index["prompts"])
    for trait, i, v in cells:
        cap = load_capture(os.path.join(real_size["exp"], trait, "inference/residual_stream_activations",
                                        f"prompt_{i}.pt"))
        expected = cap["projections"][cap["n_prompt"]:, layer, 2].astype(np.float64).mean()
        assert float(v) == pytest.approx(expected, rel=6e-3, abs=1e-6), (trait, i)
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.locator("#overview-view").screenshot(path=os.path.join(ARTIFACTS, "overview_real_size.png"))

    # Prompt 1 starts with markup: text in the grid, its hover and the prompt page, never HTML.
    text = next(p["text"] for p in index["prompts"] if p["index"] == 1)
    assert text.startswith(PAYLOAD)
    head = page.locator('#overview th.prompt-head[data-prompt="1"]')
    assert head.get_attribute("title") == text and head.text_content().startswith("#1 " + PAYLOAD)
    page.hover('#overview td.ov-cell[data-prompt="1"] >> nth=0')
    assert page.locator("#overview-hover").text_content().endswith("prompt #1: " + text)
    page.click('#overview td.ov-cell[data-trait="trait_07"][data-prompt="1"]')
    page.wait_for_selector('#heatmap[data-prompt="1"][data-trait="trait_07"]')
    wait_ready(page)
    assert page.locator("#prompt-text").text_content() == text
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("img").count() == 0
    page.screenshot(path=os.path.join(ARTIFACTS, "viewer_real_size.png"), full_page=False)

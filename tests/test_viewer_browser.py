"""The viewer in a real browser (Debian's chromium via playwright) over the demo's outputs.

Every number the page draws is checked against the JSON files read here with
Python; the page exposes them as data-* attributes on the SVG elements it draws.
Screenshots of each view go to test-artifacts/. `make test` installs chromium first
(make browser-deps); this file never runs `playwright install`.
"""

import json
import os
import shutil
import threading

import pytest
from conftest import REPO
from playwright.sync_api import sync_playwright

from traitflow.serve import make_server, viewer_url
from traitflow.viewer_index import build_index, scan

ARTIFACTS = os.path.join(REPO, "test-artifacts")
EXP = "experiments/demo"
PAYLOAD = '<img src=x onerror="window.__pwned=1">'
SCRIPT_TOKEN = "<script>window.__pwned=2</script>"


def read(workdir, relpath):
    with open(os.path.join(workdir, EXP, relpath), encoding="utf-8") as fh:
        return json.load(fh)


def show_token(token):
    """The strip's rendering of a token (viewer/app.js showToken) for printable tokens."""
    return token.replace("\n", "\u21b5").replace(" ", "\u00b7")


def projections(rec):
    """[tokens][layers][3] over prompt then response, as the JSON holds them."""
    return rec["projections"]["prompt"] + rec["projections"]["response"]


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is not installed: run `make browser-deps` (apt-get install -y chromium)"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


def serve(workdir):
    server = make_server(workdir, "demo")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def demo_server(demo_run):
    server = serve(demo_run["dir"])
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def open_viewer(browser):
    """open_viewer(server, query="") -> a page that has drawn every view; fails on any page error."""
    pages, errors = [], []

    def open_(server, query=""):
        # bypass_csp: the page's Content-Security-Policy would block injected scripts on its own;
        # the tests check that nothing is injected in the first place (and need eval for waiting).
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
        page.on("pageerror", lambda err: errors.append(str(err)))
        # A 404 is the browser's console message, not a page error (one test expects a missing index).
        page.on("console", lambda msg: errors.append(msg.text)
                if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
        page.goto(viewer_url(server, "demo") + query)
        wait_ready(page)
        pages.append(page)
        return page

    yield open_
    for page in pages:
        page.close()
    assert errors == []


def wait_ready(page):
    page.wait_for_function("['ready', 'error'].includes(document.body.dataset.state)")


def data(page, selector, *keys):
    """[(data-key values...)] of the elements matching selector, in document order."""
    return page.eval_on_selector_all(
        selector, "(els, keys) => els.map(e => keys.map(k => e.dataset[k]))", list(keys))


def cell_values(page, selector):
    """{(layer, token): value} of the matrix cells matching selector."""
    return {(int(l), int(t)): float(v) for l, t, v in data(page, selector, "layer", "token", "value")}


def screenshot(page, section, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.locator(section).screenshot(path=os.path.join(ARTIFACTS, name))


def test_heatmap_has_a_cell_per_token_and_layer_with_the_captured_values(demo_run, demo_server, open_viewer):
    index = read(demo_run["dir"], "viewer/index.json")
    trait, prompt = index["traits"][0]["name"], index["prompts"][0]
    response = read(demo_run["dir"], prompt["response"])
    rec = read(demo_run["dir"], index["files"][trait]["0"]["all_layers"])
    n_tokens, n_layers = response["prompt"]["n_tokens"] + response["response"]["n_tokens"], rec["metadata"]["n_layers"]
    page = open_viewer(demo_server)
    assert page.locator("#heatmap rect.cell").count() == n_tokens * n_layers
    expected = {(l, t): row[l][2] for t, row in enumerate(projections(rec)) for l in range(n_layers)}
    assert cell_values(page, "#heatmap rect.cell") == expected  # residual_out by default
    assert page.locator("#heatmap text.token-label").count() == n_tokens
    assert page.locator("#token-strip .token.prompt").count() == response["prompt"]["n_tokens"]
    assert page.locator("#token-strip .token.response").count() == response["response"]["n_tokens"]
    assert page.locator("#heatmap line.divider").count() == 1
    assert page.locator("#prompt-text").text_content() == prompt["text"]
    screenshot(page, "#heatmap-view", "heatmap.png")
    page.screenshot(path=os.path.join(ARTIFACTS, "viewer_full.png"), full_page=True)


def test_switching_the_point_redraws_the_heatmap_with_that_points_values(demo_run, demo_server, open_viewer):
    index = read(demo_run["dir"], "viewer/index.json")
    rec = read(demo_run["dir"], index["files"][index["traits"][0]["name"]]["0"]["all_layers"])
    page = open_viewer(demo_server)
    before = cell_values(page, "#heatmap rect.cell")
    page.select_option("#point-select", "residual_in")
    page.wait_for_selector('#heatmap[data-point="residual_in"]')
    wait_ready(page)
    after = cell_values(page, "#heatmap rect.cell")
    assert after == {(l, t): row[l][0] for t, row in enumerate(projections(rec)) for l in range(len(row))}
    assert after != before


def test_selecting_a_token_redraws_attention_over_its_context(demo_run, demo_server, open_viewer):
    index = read(demo_run["dir"], "viewer/index.json")
    rec = read(demo_run["dir"], index["files"][index["traits"][0]["name"]]["0"]["all_layers"])
    n_prompt, n_layers = rec["prompt"]["n_tokens"], rec["metadata"]["n_layers"]
    attention = rec["attention_weights"]
    page = open_viewer(demo_server)

    t = n_prompt + 2  # a response token: its stored row has n_prompt + 3 entries
    page.click(f'#token-strip .token[data-token="{t}"]')
    page.wait_for_selector(f'#attention[data-token="{t}"]')
    wait_ready(page)
    shown = cell_values(page, "#attention rect.cell")
    assert len(shown) == (t + 1) * n_layers
    assert shown == {(l, k): w for l in range(n_layers) for k, w in enumerate(attention["response"][2][f"layer_{l}"])}
    screenshot(page, "#attention-view", "attention.png")

    page.keyboard.press("ArrowLeft")  # the selection moves, the attention view follows
    page.wait_for_selector(f'#attention[data-token="{t - 1}"]')
    wait_ready(page)
    assert page.locator("#attention rect.cell").count() == t * n_layers

    page.click('#heatmap rect.cell[data-token="5"][data-layer="1"]')  # a prompt token, from the heatmap
    page.wait_for_selector('#attention[data-token="5"]')
    wait_ready(page)
    assert cell_values(page, "#attention rect.cell") == {
        (l, k): attention["prompt"][f"layer_{l}"][5][k] for l in range(n_layers) for k in range(6)}
    assert page.locator("#layer-select").input_value() == "1"  # clicking a cell also picks its layer


def test_cross_trait_trajectories_plot_every_trait_at_the_chosen_layer(demo_run, demo_server, open_viewer):
    index = read(demo_run["dir"], "viewer/index.json")
    traits = [t["name"] for t in index["traits"]]
    recs = {t: read(demo_run["dir"], index["files"][t]["0"]["all_layers"]) for t in traits}
    page = open_viewer(demo_server)
    assert page.locator("#trajectories path.trait-line").count() == len(traits)
    for layer in (int(page.locator("#layer-select").input_value()), 0):
        page.select_option("#layer-select", str(layer))
        page.wait_for_selector(f'#trajectories[data-layer="{layer}"]')
        wait_ready(page)
        for trait in traits:
            shown = [float(v) for _, v in data(page, f'#trajectories circle.point[data-name="{trait}"]', "token", "value")]
            assert shown == [row[layer][2] for row in projections(recs[trait])]
    screenshot(page, "#trajectory-view", "trajectories.png")


def persistent_tokens(scores, dyn):
    peak, threshold = dyn["peak"], dyn["persistence"]["threshold"]
    sign = 1 if peak["score"] > 0 else -1
    return [t for t in range(peak["index"] + 1, len(scores)) if sign * (scores[t] - threshold) > 0]


def test_dynamics_markers_sit_at_the_peak_commitment_and_persistence_tokens(demo_run, demo_server, open_viewer):
    index = read(demo_run["dir"], "viewer/index.json")
    trait = index["traits"][0]["name"]
    assert "dynamics" in index["files"][trait]["0"], "the demo writes dynamics for every (trait, prompt)"
    dyn = read(demo_run["dir"], index["files"][trait]["0"]["dynamics"])
    method = next(iter(dyn["scores"]))
    scores, d = dyn["scores"][method], dyn["dynamics"][method]
    page = open_viewer(demo_server)
    assert [float(v) for (v,) in data(page, "#dynamics circle.point", "value")] == scores
    assert data(page, "#dynamics .peak-marker", "token") == [[str(d["peak"]["index"])]]
    commitment = [[str(d["commitment_point"]["index"])]] if d["commitment_point"] else []
    assert data(page, "#dynamics .commitment-marker", "token") == commitment
    assert [int(t) for (t,) in data(page, "#dynamics .persistence-marker", "token")] == persistent_tokens(scores, d)
    assert len(persistent_tokens(scores, d)) == d["persistence"]["count"]
    screenshot(page, "#dynamics-view", "dynamics.png")

    # On the cross-trait plot, markers appear for the traits whose dynamics used this layer and point.
    page.select_option("#point-select", dyn["point"])
    page.select_option("#layer-select", str(dyn["layer"]))
    page.wait_for_selector(f'#trajectories[data-layer="{dyn["layer"]}"][data-point="{dyn["point"]}"]')
    wait_ready(page)
    others = [read(demo_run["dir"], index["files"][t["name"]]["0"]["dynamics"]) for t in index["traits"]]
    matching = [o for o in others if (o["layer"], o["point"]) == (dyn["layer"], dyn["point"])]
    assert page.locator("#trajectories .peak-marker").count() == len(matching) > 0


def test_deep_dive_shows_decomposition_heads_and_neurons(demo_run, demo_server, open_viewer):
    index = read(demo_run["dir"], "viewer/index.json")
    found = [(t, p, e["single_layer"]) for t, per in index["files"].items() for p, e in per.items() if "single_layer" in e]
    assert found, "the demo writes single-layer captures"
    trait, prompt, layers = found[0]
    layer = next(iter(layers))
    rec = read(demo_run["dir"], layers[layer])
    dec = rec["decomposition"]
    n_tokens = rec["prompt"]["n_tokens"] + rec["response"]["n_tokens"]
    page = open_viewer(demo_server, f"&trait={trait}&prompt={prompt}")
    assert page.locator("#deepdive-layer-select").input_value() == layer
    assert [float(v) for (v,) in data(page, "#decomposition rect.attn-bar", "value")] == dec["attn_contribution"]
    assert [float(v) for (v,) in data(page, "#decomposition rect.mlp-bar", "value")] == dec["mlp_contribution"]
    heads = [[float(v) for (r, t, v) in data(page, "#heads rect.cell", "row", "token", "value") if int(r) == h]
             for h in range(len(dec["head_contributions"]))]
    assert heads == dec["head_contributions"]
    assert page.locator("#heads rect.cell").count() == len(dec["head_contributions"]) * n_tokens
    neurons = rec["top_neurons"]
    assert page.locator("#neurons rect.cell").count() == len(neurons["indices"]) * n_tokens
    assert page.locator("#neurons text.row-label").all_text_contents() == [f"neuron {n}" for n in neurons["indices"]]
    screenshot(page, "#deepdive-view", "deepdive.png")


@pytest.fixture(scope="module")
def markup_server(demo_run, tmp_path_factory):
    """The demo's outputs with prompt 0 and some of its tokens replaced by markup."""
    dest = str(tmp_path_factory.mktemp("markup"))
    shutil.copytree(os.path.join(demo_run["dir"], "experiments"), os.path.join(dest, "experiments"))
    exp = os.path.join(dest, EXP)
    for path in scan(exp):
        if "prompt_0" not in os.path.basename(path):
            continue
        with open(path, encoding="utf-8") as fh:
            rec = json.load(fh)
        if "prompt" in rec:  # responses, all-layers and single-layer files
            rec["prompt"]["text"] = PAYLOAD
            rec["prompt"]["tokens"][6] = PAYLOAD
            rec["response"]["tokens"][0] = SCRIPT_TOKEN
            rec["response"]["text"] = SCRIPT_TOKEN + rec["response"]["text"]
        if "tokens" in rec:  # dynamics files
            rec["tokens"][6] = PAYLOAD
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(rec, fh)
    old = read(demo_run["dir"], "viewer/index.json")
    index = build_index(exp, scan(exp), "demo", old["model"], old["n_layers"],
                        {t["name"]: {"method": t["method"], "vector_layer": t["vector_layer"]} for t in old["traits"]})
    with open(os.path.join(exp, "viewer/index.json"), "w", encoding="utf-8") as fh:
        json.dump(index, fh)
    server = serve(dest)
    yield server
    server.shutdown()
    server.server_close()


def test_markup_in_prompts_and_tokens_is_shown_as_text_and_never_runs(markup_server, open_viewer):
    page = open_viewer(markup_server, "&token=6")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 1  # app.js only
    assert "script-src 'self'" in page.locator('meta[http-equiv="Content-Security-Policy"]').get_attribute("content")
    assert page.locator("#prompt-text").text_content() == PAYLOAD
    assert page.get_by_text(PAYLOAD, exact=True).is_visible()
    assert page.locator("#response-text").text_content().startswith(SCRIPT_TOKEN)
    assert page.locator("#prompt-select option").first.text_content() == "0: " + PAYLOAD
    assert page.locator('#token-strip .token[data-token="6"]').text_content() == show_token(PAYLOAD)
    assert page.locator("#heatmap text.token-label title").nth(6).text_content().endswith(json.dumps(PAYLOAD) + " (prompt)")
    assert page.locator("#attention-title").text_content().startswith("token #6 \u201c" + show_token(PAYLOAD))
    screenshot(page, "#prompt-view", "markup_as_text.png")


def test_a_missing_index_says_how_to_build_it(tmp_path, open_viewer):
    os.makedirs(tmp_path / EXP)
    server = serve(str(tmp_path))
    try:
        page = open_viewer(server)
        assert page.evaluate("document.body.dataset.state") == "error"
        assert "snakemake --cores 1 experiments/demo/viewer/index.json" in page.locator("#message").text_content()
    finally:
        server.shutdown()
        server.server_close()

"""The viewer in a real browser (Debian's chromium via playwright) over the demo's outputs.

Every number the page draws is checked against the files read here with Python
(per-trait JSON, the shared per-prompt .safetensors through traitflow.core.shared, the
overview); the page exposes them as data-* attributes on the elements it draws.
Screenshots of each view go to test-artifacts/. `make test` installs chromium first
(make browser-deps); this file never runs `playwright install`.
tests/test_viewer_real_size.py drives the same page at gemma-2-2b's depth; tests/test_viewer_markup.py
feeds it markup; tests/test_viewer_sets_labels.py covers prompt sets, labels and a partial logit lens.
"""

import functools
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from conftest import REPO
from viewer_page import ARTIFACTS, EXP, cell_values, data, js_string, projections, read, screenshot, served, wait_ready

from traitflow.outputs.serve import ViewerHandler
from traitflow.core.shared import read_shared


def shared(workdir, index, prompt=0):
    entry = next(p for p in index["prompts"] if p["index"] == prompt)
    return read_shared(os.path.join(workdir, EXP, entry["shared"]))


def attention_weights(data, t):
    """Token t's rows [L][t + 1] as the page computes them: uint16 code / 65535 in float64."""
    L = data.n_layers
    start = L * t * (t + 1) // 2
    codes = np.asarray(data.packed_attention[start:start + L * (t + 1)], dtype=np.float64).reshape(L, t + 1)
    return codes / 65535


def tokens_of(workdir, index, prompt=0):
    entry = next(p for p in index["prompts"] if p["index"] == prompt)
    resp = read(workdir, entry["response"])
    return resp["prompt"]["tokens"] + resp["response"]["tokens"], resp["prompt"]["n_tokens"]


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
    # The page read the shared file by byte ranges only, never whole.
    shared_responses = [r for r in page.responses if r.url.endswith(".safetensors")]
    assert shared_responses and {r.status for r in shared_responses} == {206}
    screenshot(page, "#heatmap-view", "heatmap.png")
    page.screenshot(path=os.path.join(ARTIFACTS, "viewer_full.png"), full_page=True)


def test_logit_lens_strip_and_hover_show_the_chosen_layers_predictions(demo_run, demo_server, open_viewer):
    index = read(demo_run["dir"], "viewer/index.json")
    data_ = shared(demo_run["dir"], index)
    assert data_.logit_lens_ids is not None, "the demo captures a logit lens (capture.logit_lens)"
    page = open_viewer(demo_server, "&prompt=0&layer=1")
    n_tokens = data_.n_tokens
    labels = data(page, "#heatmap text.lens-label", "token", "layer")
    assert [(int(t), int(l)) for t, l in labels] == [(t, 1) for t in range(n_tokens)]
    top1 = [data_.logit_lens_tokens[int(i)] for i in data_.logit_lens_ids[:, 1, 0]]
    titles = page.locator("#heatmap text.lens-label title").all_text_contents()
    for t, title in enumerate(titles):
        assert f"layer 1 predicts next: {js_string(top1[t])} " in title
    page.hover('#heatmap rect.cell[data-token="3"][data-layer="2"]')
    hover = page.locator("#heatmap-hover").text_content()
    k = data_.logit_lens_ids.shape[2]
    expected = ", ".join(f"{js_string(data_.logit_lens_tokens[int(i)])} {100 * float(p):.1f}%"
                         for i, p in zip(data_.logit_lens_ids[3, 2], data_.logit_lens_probs[3, 2]))
    assert hover.startswith("layer 2, token #3 ") and hover.endswith("layer 2 predicts next: " + expected), hover
    assert k >= 1


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


def test_the_cosine_toggle_divides_by_the_shared_residual_norms(demo_run, demo_server, open_viewer):
    index = read(demo_run["dir"], "viewer/index.json")
    traits = [t["name"] for t in index["traits"]]
    rec = read(demo_run["dir"], index["files"][traits[0]]["0"]["all_layers"])
    norms = shared(demo_run["dir"], index).residual_norms
    page = open_viewer(demo_server)
    page.select_option("#measure-select", "cosine")
    page.wait_for_selector('#heatmap[data-measure="cosine"]')
    wait_ready(page)
    expected = {(l, t): row[l][2] / float(norms[t, l, 2])
                for t, row in enumerate(projections(rec)) for l in range(len(row))}
    assert cell_values(page, "#heatmap rect.cell") == pytest.approx(expected)
    assert all(abs(v) <= 1 + 1e-6 for v in expected.values())
    layer = int(page.locator("#layer-select").input_value())
    shown = [float(v) for _, v in data(page, f'#trajectories circle.point[data-name="{traits[1]}"]', "token", "value")]
    other = projections(read(demo_run["dir"], index["files"][traits[1]]["0"]["all_layers"]))
    assert shown == pytest.approx([row[layer][2] / float(norms[t, layer, 2]) for t, row in enumerate(other)])
    assert "measure=cosine" in page.url


def test_selecting_a_token_redraws_attention_over_its_context(demo_run, demo_server, open_viewer):
    index = read(demo_run["dir"], "viewer/index.json")
    data_ = shared(demo_run["dir"], index)
    n_prompt, n_layers = data_.n_prompt, data_.n_layers
    page = open_viewer(demo_server)

    t = n_prompt + 2  # a response token: its row has n_prompt + 3 entries
    page.click(f'#token-strip .token[data-token="{t}"]')
    page.wait_for_selector(f'#attention[data-token="{t}"]')
    wait_ready(page)
    shown = cell_values(page, "#attention rect.cell")
    assert len(shown) == (t + 1) * n_layers
    rows = attention_weights(data_, t)
    assert shown == {(l, k): rows[l, k] for l in range(n_layers) for k in range(t + 1)}
    np.testing.assert_allclose(rows, data_.attention_rows(t), atol=1e-7)  # what traitflow.core.shared reads
    screenshot(page, "#attention-view", "attention.png")

    page.keyboard.press("ArrowLeft")  # the selection moves, the attention view follows
    page.wait_for_selector(f'#attention[data-token="{t - 1}"]')
    wait_ready(page)
    assert page.locator("#attention rect.cell").count() == t * n_layers

    page.click('#heatmap rect.cell[data-token="5"][data-layer="1"]')  # a prompt token, from the heatmap
    page.wait_for_selector('#attention[data-token="5"]')
    wait_ready(page)
    rows = attention_weights(data_, 5)
    assert cell_values(page, "#attention rect.cell") == {(l, k): rows[l, k] for l in range(n_layers) for k in range(6)}
    assert page.locator("#layer-select").input_value() == "1"  # clicking a cell also picks its layer
    page.keyboard.press("ArrowUp")  # up and down change the layer
    page.wait_for_selector('#trajectories[data-layer="2"]')
    assert page.locator("#layer-select").input_value() == "2"


def test_token_search_marks_matches_and_enter_selects_the_next(demo_run, demo_server, open_viewer):
    index = read(demo_run["dir"], "viewer/index.json")
    tokens, _ = tokens_of(demo_run["dir"], index)
    needle = next(tok for tok in tokens[1:] if tok.strip() and len(tok.strip()) > 1).strip()
    matches = [t for t, tok in enumerate(tokens) if needle.lower() in tok.lower()]
    page = open_viewer(demo_server, "&prompt=0&token=0")
    page.fill("#token-search", needle)
    wait_ready(page)
    page.wait_for_function("document.querySelectorAll('#token-strip .token.match').length > 0")
    assert [int(t) for (t,) in data(page, "#token-strip .token.match", "token")] == matches
    page.press("#token-search", "Enter")
    page.wait_for_selector(f'#attention[data-token="{matches[0]}"]')
    wait_ready(page)
    assert page.locator("#search-count").text_content() == f"match 1 of {len(matches)}"
    assert page.locator("#heatmap text.token-label.selected").get_attribute("data-token") == str(matches[0])


def test_a_server_that_ignores_range_still_gets_every_view_right(demo_run, open_viewer):
    """The viewer falls back to the whole shared file (read once) when a server answers 200 to a Range."""

    class PlainHandler(ViewerHandler):
        def send_head(self):
            return SimpleHTTPRequestHandler.send_head(self)

        def end_headers(self):
            SimpleHTTPRequestHandler.end_headers(self)

    mounts = {"viewer": os.path.join(REPO, "viewer"), "experiments": os.path.join(demo_run["dir"], "experiments")}
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(PlainHandler, mounts=mounts))
    server.experiment = "demo"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        index = read(demo_run["dir"], "viewer/index.json")
        data_ = shared(demo_run["dir"], index)
        t = data_.n_prompt
        page = open_viewer(server, f"&prompt=0&token={t}")
        rows = attention_weights(data_, t)
        assert cell_values(page, "#attention rect.cell") == {
            (l, k): rows[l, k] for l in range(data_.n_layers) for k in range(t + 1)}
        assert page.locator("#heatmap text.lens-label").count() == data_.n_tokens
        shared_responses = [r for r in page.responses if r.url.endswith(".safetensors")]
        assert [r.status for r in shared_responses] == [200]  # one whole read, later ranges from memory
        page.keyboard.press("ArrowRight")
        page.wait_for_selector(f'#attention[data-token="{t + 1}"]')
        assert len([r for r in page.responses if r.url.endswith(".safetensors")]) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_overview_is_the_first_screen_and_a_cell_opens_its_prompt(demo_run, demo_server, open_viewer):
    index = read(demo_run["dir"], "viewer/index.json")
    ov = read(demo_run["dir"], "viewer/overview.json")
    page = open_viewer(demo_server, "")
    assert page.evaluate("document.body.dataset.page") == "overview"
    cells = data(page, "#overview td.ov-cell", "trait", "prompt", "value")
    assert len(cells) == len(ov["traits"]) * len(ov["prompts"])
    layer = int(page.locator("#layer-select").input_value())
    assert layer == index["traits"][0]["vector_layer"]
    L, P = ov["n_layers"], len(ov["sublayers"])

    def expected(stat, measure="projection", point=2):
        flat = ov["values"][measure][stat]
        return {(trait, str(i)): flat[((a * len(ov["prompts"]) + b) * L + layer) * P + point]
                for a, trait in enumerate(ov["traits"]) for b, i in enumerate(ov["prompts"])}
    assert {(t, i): float(v) for t, i, v in cells} == expected("mean")
    texts = {str(p["index"]): p["text"] for p in index["prompts"]}
    heads = page.locator("#overview th.prompt-head")
    assert [heads.nth(k).get_attribute("title") for k in range(heads.count())] == list(texts.values())

    page.select_option("#stat-select", "peak")
    page.wait_for_selector('#overview[data-stat="peak"]')
    wait_ready(page)
    peaks = expected("peak")
    assert {(t, i): float(v) for t, i, v in data(page, "#overview td.ov-cell", "trait", "prompt", "value")} == peaks
    # where each trait's vector was read (the demo's: every token), as the tables' position score
    assert page.locator("#stat-select option").all_inner_texts() == ["mean", "peak", "position"]
    page.select_option("#stat-select", "position")
    page.wait_for_selector('#overview[data-stat="position"]')
    wait_ready(page)
    assert {(t, i): float(v) for t, i, v in data(page, "#overview td.ov-cell", "trait", "prompt", "value")} == (
        expected("position"))
    assert "where the trait's vector was read" in page.locator("#overview-legend").text_content()
    page.select_option("#stat-select", "peak")
    page.wait_for_selector('#overview[data-stat="peak"]')
    wait_ready(page)

    trait = ov["traits"][1]
    page.click(f'#overview th[data-sort="{trait}"]')  # sort the prompts by one trait, largest first
    page.wait_for_selector(f'#overview[data-sort="{trait}"]')
    wait_ready(page)
    order = [i for (i,) in data(page, "#overview tbody tr", "prompt")]
    assert order == sorted(texts, key=lambda i: (-peaks[(trait, i)], int(i)))
    screenshot(page, "#overview-view", "overview.png")

    i = order[0]
    page.click(f'#overview td.ov-cell[data-trait="{trait}"][data-prompt="{i}"]')
    page.wait_for_selector(f'#heatmap[data-prompt="{i}"][data-trait="{trait}"]')
    wait_ready(page)
    assert page.evaluate("document.body.dataset.page") == "prompt"
    assert page.locator("#prompt-text").text_content() == texts[i]
    page.go_back()  # the browser's back button returns to the overview
    page.wait_for_selector("#overview td.ov-cell")
    assert page.evaluate("document.body.dataset.page") == "overview"


def test_the_page_cache_stays_within_its_byte_budget(demo_run, demo_server, open_viewer):
    index = read(demo_run["dir"], "viewer/index.json")
    budget = 100 * 1024
    page = open_viewer(demo_server, f"&prompt=0&cache_mb={budget / 2**20}")
    seen = []
    for p in index["prompts"][:6]:
        page.select_option("#prompt-select", str(p["index"]))
        page.wait_for_selector(f'#heatmap[data-prompt="{p["index"]}"]')
        wait_ready(page)
        seen.append(int(page.evaluate("document.body.dataset.cacheBytes")))
    assert max(seen) <= budget, seen
    assert page.locator("#heatmap rect.cell").count() > 0


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


def test_a_missing_index_says_how_to_build_it(tmp_path, open_viewer):
    os.makedirs(tmp_path / EXP)
    with served(str(tmp_path)) as server:
        page = open_viewer(server)
        assert page.evaluate("document.body.dataset.state") == "error"
        assert (".venv/bin/snakemake --cores 1 experiments/demo/viewer/index.json --config experiment=demo"
                in page.locator("#message").text_content())

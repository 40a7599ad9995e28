"""The viewer's prompt sets and prompt labels, in a real browser (Debian's chromium via playwright).

- In the URL, `set` and `prompt` are a prompt set and a prompt's number within that set,
  and every place on the page names a prompt the same way (issue 23 item 5): checked on a
  copy of the demo whose prompts are split into two sets, "general" and "harmful".
- The overview sorts prompts by a trait's score and groups them by a label of the prompt
  set ({"labels": {"refusal": true}}): checked for mechanics on a copy with labels written
  into its overview, and for meaning on the demo itself (sorted by refusal, the prompts
  labelled refusal rank on top; this needs the trained demo model of issue 18).
- A logit lens over some layers only (capture.logit_lens_layers) shows predictions at those
  layers and says so at the others.
"""

import json
import os
import re

import pytest
from conftest import REPO
from viewer_page import EXP, cell_values, copy_outputs, data, projections, read, served, url_params, wait_ready

from traitflow.core.shared import read_shared, write_shared
from traitflow.outputs.viewer_index import build_index, classify, scan

SETS = ("general", "harmful")


def split_into_sets(exp, n_general):
    """Move the demo's per-prompt files into two named sets: prompts 0..n_general-1 become
    general/0.., the rest harmful/0.. (the viewer index is rebuilt from the moved files)."""
    for path in scan(exp):
        found = classify(os.path.relpath(path, exp))
        if not found or not found[2]:
            continue
        i = found[2][1]
        name, j = (SETS[0], i) if i < n_general else (SETS[1], i - n_general)
        folder, base = os.path.split(path)
        os.makedirs(os.path.join(folder, name), exist_ok=True)
        os.rename(path, os.path.join(folder, name, re.sub(rf"^prompt_{i}(?=[._])", f"prompt_{j}", base)))


def rebuild_index(exp, old):
    index = build_index(exp, scan(exp), "demo", old["model"], old["n_layers"],
                        {t["name"]: {"method": t["method"], "vector_layer": t["vector_layer"]} for t in old["traits"]})
    with open(os.path.join(exp, "viewer/index.json"), "w", encoding="utf-8") as fh:
        json.dump(index, fh)
    return index


@pytest.fixture(scope="module")
def two_sets(demo_run, tmp_path_factory):
    """(server, index, workdir): the demo's outputs with its prompts in two sets."""
    dest = copy_outputs(demo_run["dir"], tmp_path_factory, "two_sets")
    exp = os.path.join(dest, EXP)
    old = read(demo_run["dir"], "viewer/index.json")
    split_into_sets(exp, n_general=len(old["prompts"]) // 2)
    index = rebuild_index(exp, old)
    assert index["prompt_sets"] == list(SETS)
    with served(dest) as server:
        yield server, index, dest


def entry(index, prompt_set, set_index):
    return next(p for p in index["prompts"] if (p["prompt_set"], p["set_index"]) == (prompt_set, set_index))


def test_set_and_prompt_in_the_url_are_a_set_and_its_own_prompt_number(two_sets, open_viewer):
    server, index, workdir = two_sets
    target = entry(index, "harmful", 0)
    assert target["index"] != 0  # read as a number across sets, prompt=0 would open general/0
    trait = index["traits"][0]["name"]
    page = open_viewer(server, "&set=harmful&prompt=0")
    assert page.locator("#prompt-text").text_content() == target["text"]
    assert page.locator("#set-select").input_value() == "harmful"
    assert page.locator("#prompt-select option:checked").text_content().startswith("harmful/0: ")
    assert ", prompt harmful/0, " in page.locator("#heatmap-title").text_content()
    assert page.locator("#trajectory-title").text_content().startswith("prompt harmful/0, ")
    assert {k: url_params(page)[k] for k in ("set", "prompt")} == {"set": "harmful", "prompt": "0"}
    rec = read(workdir, index["files"][trait][str(target["index"])]["all_layers"])
    assert "/harmful/prompt_0." in index["files"][trait][str(target["index"])]["all_layers"]
    assert cell_values(page, "#heatmap rect.cell") == {
        (l, t): row[l][2] for t, row in enumerate(projections(rec)) for l in range(len(row))}
    # The dropdown lists the set's own prompts; the next one is prompt=1 in the URL.
    shown = page.locator("#prompt-select option").all_text_contents()
    n_harmful = sum(p["prompt_set"] == "harmful" for p in index["prompts"])
    assert [s.split(":")[0] for s in shown] == [f"harmful/{j}" for j in range(n_harmful)]
    page.select_option("#prompt-select", str(entry(index, "harmful", 1)["index"]))
    page.wait_for_function("new URLSearchParams(location.search).get('prompt') === '1'")
    wait_ready(page)
    assert page.locator("#prompt-text").text_content() == entry(index, "harmful", 1)["text"]
    assert url_params(page)["set"] == "harmful"

    # The overview of the set names its prompts the same way, and a click opens set=harmful&prompt=j.
    page.click("#overview-button")
    page.wait_for_selector("#overview td.ov-cell")
    wait_ready(page)
    heads = page.locator("#overview th.prompt-head").all_text_contents()
    assert [h.split(" ")[0] for h in heads] == [f"#harmful/{j}" for j in range(n_harmful)]
    assert url_params(page)["set"] == "harmful" and "prompt" not in url_params(page)
    last = entry(index, "harmful", n_harmful - 1)
    page.click(f'#overview th.prompt-head[data-prompt="{last["index"]}"]')
    page.wait_for_selector(f'#heatmap[data-prompt="{last["index"]}"]')
    wait_ready(page)
    assert {k: url_params(page)[k] for k in ("set", "prompt")} == {"set": "harmful", "prompt": str(n_harmful - 1)}
    assert page.locator("#prompt-text").text_content() == last["text"]

    # Choosing the other set opens its first prompt.
    page.select_option("#set-select", "general")
    page.wait_for_function("new URLSearchParams(location.search).get('set') === 'general'")
    wait_ready(page)
    assert url_params(page)["prompt"] == "0"
    assert page.locator("#prompt-text").text_content() == entry(index, "general", 0)["text"]


def test_a_url_without_a_set_opens_the_first_sets_prompt(two_sets, open_viewer):
    server, index, _ = two_sets
    page = open_viewer(server, "&prompt=1")
    assert page.locator("#prompt-text").text_content() == entry(index, "general", 1)["text"]
    assert {k: url_params(page)[k] for k in ("set", "prompt")} == {"set": "general", "prompt": "1"}
    assert ", prompt general/1, " in page.locator("#heatmap-title").text_content()


@pytest.fixture(scope="module")
def labelled(demo_run, tmp_path_factory):
    """(server, labels): the demo's outputs with labels in its overview, as a JSON prompt set gives them."""
    dest = copy_outputs(demo_run["dir"], tmp_path_factory, "labelled")
    path = os.path.join(dest, EXP, "viewer/overview.json")
    with open(path, encoding="utf-8") as fh:
        ov = json.load(fh)
    labels = {"harmful": [b % 3 == 0 for b in range(len(ov["prompts"]))],
              "opinion": [True if b % 2 else None for b in range(len(ov["prompts"]))]}  # None: no label
    ov["labels"] = list(labels)
    ov["prompt_meta"] = [{"set": "default", "index": i, "id": 100 + i, "fields": {"note": f"note {i}"},
                          "labels": {k: v[b] for k, v in labels.items() if v[b] is not None}}
                         for b, i in enumerate(ov["prompts"])]
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(ov, fh)
    with served(dest) as server:
        yield server, labels


def test_the_overview_groups_prompts_by_a_label_and_sorts_within_each_group(demo_run, labelled, open_viewer):
    server, labels = labelled
    ov = read(demo_run["dir"], "viewer/overview.json")
    trait = ov["traits"][1]
    page = open_viewer(server, f"&sort={trait}:desc")
    assert page.locator("#overview th.label-head").all_text_contents() == ["harmful", "opinion"]
    assert page.locator(".overview-tools").is_visible()
    cells = {(t, int(p)): float(v) for t, p, v in data(page, "#overview td.ov-cell", "trait", "prompt", "value")}
    shown = {int(p): v for p, v in data(page, '#overview td.label-cell[data-label="opinion"]', "prompt", "value")}
    assert shown == {i: "true" if labels["opinion"][b] else "null" for b, i in enumerate(ov["prompts"])}

    page.click('#overview th.label-head[data-group="harmful"]')  # group by a label: true first, then false
    page.wait_for_selector('#overview[data-group="harmful"]')
    wait_ready(page)
    assert url_params(page)["group"] == "harmful"
    assert page.locator("#group-select").input_value() == "harmful"
    heads = data(page, "#overview tr.group-head", "value")
    assert heads == [["true"], ["false"]]
    by_score = sorted(ov["prompts"], key=lambda i: (-cells[(trait, i)], i))
    harmful = {i for b, i in enumerate(ov["prompts"]) if labels["harmful"][b]}
    order = [int(p) for (p,) in data(page, "#overview tr[data-prompt]", "prompt")]
    assert order == [i for i in by_score if i in harmful] + [i for i in by_score if i not in harmful]
    means = {t: float(v) for t, v in data(page, "#overview tr.group-head >> nth=0 >> td.group-mean", "trait", "value")}
    expected = sum(cells[(trait, i)] for i in harmful) / len(harmful)
    assert means[trait] == pytest.approx(expected)
    title = page.locator(f'#overview td.label-cell[data-label="harmful"][data-prompt="{ov["prompts"][0]}"]')
    assert title.get_attribute("title") == f"harmful: true (id {100 + ov['prompts'][0]}; note: note {ov['prompts'][0]})"

    os.makedirs(os.path.join(REPO, "test-artifacts"), exist_ok=True)
    page.locator("#overview-view").screenshot(path=os.path.join(REPO, "test-artifacts", "overview_grouped.png"))

    page.select_option("#group-select", "opinion")  # a label some prompts lack: those go last
    page.wait_for_selector('#overview[data-group="opinion"]')
    wait_ready(page)
    assert data(page, "#overview tr.group-head", "value") == [["true"], ["null"]]
    page.reload()  # the grouping and the sort are in the URL
    wait_ready(page)
    assert page.locator("#overview").get_attribute("data-group") == "opinion"
    assert page.locator("#overview").get_attribute("data-sort") == trait
    page.select_option("#group-select", "")
    page.wait_for_selector('#overview[data-group=""]')
    assert page.locator("#overview tr.group-head").count() == 0 and "group" not in url_params(page)


def auroc(flags):
    """The chance that a labelled prompt ranks above an unlabelled one, from a ranking (top first)."""
    pos = [k for k, f in enumerate(flags) if f]
    neg = [k for k, f in enumerate(flags) if not f]
    return sum((p < n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def test_the_overview_sorted_by_refusal_puts_the_harmful_prompts_on_top(demo_run, demo_server, open_viewer):
    """Meaning, on the trained demo model (issue 18): the refusal score ranks the prompts labelled refusal first."""
    index = read(demo_run["dir"], "viewer/index.json")
    ov = read(demo_run["dir"], "viewer/overview.json")
    assert "refusal" in ov.get("labels", []), "the demo's prompts carry labels (issue 18: a JSON prompt set)"
    trait = next(t for t in index["traits"] if t["name"].split("/")[-1] == "refusal")
    page = open_viewer(demo_server, f"&layer={trait['vector_layer']}&stat=mean&point=residual_out")
    page.click(f'#overview th.sortable[data-sort="{trait["name"]}"]')  # largest first
    page.wait_for_selector(f'#overview[data-sort="{trait["name"]}"]')
    wait_ready(page)
    flags = [v == "true" for _, v in data(page, '#overview tr[data-prompt] td.label-cell[data-label="refusal"]',
                                            "prompt", "value")]
    assert len(flags) == len(ov["prompts"]) and any(flags) and not all(flags)
    assert flags[0], "the top prompt is one labelled refusal"
    assert auroc(flags) >= 0.95, flags
    os.makedirs(os.path.join(REPO, "test-artifacts"), exist_ok=True)
    page.locator("#overview-view").screenshot(path=os.path.join(REPO, "test-artifacts", "overview_by_refusal.png"))


@pytest.fixture(scope="module")
def lens_subset(demo_run, tmp_path_factory):
    """(server, layers, shared data): the demo's outputs with prompt 0's logit lens at two layers only
    (capture.logit_lens_layers), as a deep model's capture writes it."""
    dest = copy_outputs(demo_run["dir"], tmp_path_factory, "lens_subset")
    path = os.path.join(dest, EXP, read(dest, "viewer/index.json")["prompts"][0]["shared"])
    data_ = read_shared(path)
    layers = [1, data_.n_layers - 1]
    rows = [data_.logit_lens_layers.index(layer) for layer in layers]
    meta = {k: v for k, v in data_.metadata.items()
            if k not in ("format", "n_prompt", "n_response", "n_layers", "sublayers", "traitflow_version", "created",
                         "attention_encoding", "logit_lens_k", "logit_lens_tokens", "logit_lens_layers")}
    write_shared(path, data_.token_ids, data_.n_prompt, data_.residual_norms, data_.attention_matrix(),
                 (data_.logit_lens_ids[:, rows], data_.logit_lens_probs[:, rows], data_.logit_lens_tokens, layers), meta)
    with served(dest) as server:
        yield server, layers, read_shared(path)


def test_a_logit_lens_over_some_layers_shows_those_layers_predictions_only(lens_subset, open_viewer):
    server, layers, data_ = lens_subset
    assert data_.logit_lens_layers == layers and data_.logit_lens_ids.shape[1] == 2
    page = open_viewer(server, "&prompt=0&layer=0")  # a layer the lens does not cover
    assert page.locator("#heatmap text.lens-label").count() == 0
    assert page.locator("#heatmap text.lens-row").evaluate("e => e.firstChild.nodeValue") == "L0: no lens"
    title = page.locator('#heatmap rect.cell[data-token="3"][data-layer="0"] title').text_content()
    assert "predicts next" not in title
    top1 = [data_.logit_lens_tokens[int(i)] for i in data_.logit_lens_ids[:, 0, 0]]  # row 0: layer 1
    title = page.locator('#heatmap rect.cell[data-token="3"][data-layer="1"] title').text_content()
    assert f"layer 1 predicts next: {json.dumps(top1[3], ensure_ascii=False)} " in title
    page.select_option("#layer-select", "1")
    page.wait_for_selector("#heatmap text.lens-label")
    wait_ready(page)
    labels = data(page, "#heatmap text.lens-label", "token", "layer")
    assert [(int(t), int(l)) for t, l in labels] == [(t, 1) for t in range(data_.n_tokens)]
    titles = page.locator("#heatmap text.lens-label title").all_text_contents()
    assert all(f"layer 1 predicts next: {json.dumps(top1[t], ensure_ascii=False)} " in s for t, s in enumerate(titles))

"""`snakemake --report` on the demo: what it holds, its size, and figures drawing exactly the captured numbers."""

import base64
import html as html_lib
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import TEST_CONFIG, snakemake

from traitflow.core.formats import load_capture
from traitflow.outputs.plots import (TOKENS_PER_PANEL, colour_limit, cross_trait_figure, heatmap_figure, panels, save_figure,
                             show_token)
from traitflow.outputs.report_tables import (dynamics_summary_html, fmt, prompt_number, report_label, short_text,
                                     vector_quality_rows)

EXP = "experiments/demo"
POINTS = ["residual_in", "after_attn", "residual_out"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TABLES, CROSS, HEATMAPS = "1. Tables", "2. Cross-trait trajectories", "3. Token x layer heatmaps"
STEERING = "4. Steering: does the vector do anything?"  # the demo steers every trait
# Size bounds (bytes; sizes, not times). Measured on the demo with 10 prompts shown: heatmaps 12-15 KB,
# cross-trait plots 22-32 KB (palette PNGs; the RGBA PNGs before were 36-41 KB and 62-91 KB), the whole
# report 4.4 MB, of which about 3 MB are Snakemake's own scripts and styles, the same for every report.
MAX_HEATMAP_PNG = 25_000
MAX_CROSS_PNG = 50_000
SHOWN = TEST_CONFIG["report"]["max_prompts"]  # prompts with figures (the default is 10)
# Every embedded result (base64), per prompt shown: 3 heatmaps, a cross-trait plot and the tables' share
# (1.5 MB at 10 prompts); Snakemake's own scripts and styles add about 3 MB to any report.
MAX_RESULTS = 150_000 * SHOWN
MAX_REPORT = 3_500_000 + MAX_RESULTS
MAX_DETAILS = 750  # characters of a figure's "Job parameters" (the 24 capture paths of before: 2.4 KB; each
# trait's vector now names its extraction position too)


def embedded(html, name):
    """A JSON object the report page embeds as `var NAME = {...};`."""
    m = re.search(rf"<script id=\"{name}\">\s*var {name} = (.*?);\s*</script>", html, re.DOTALL)
    return json.loads(m[1])


def data_text(result):
    """The text of an embedded result (a base64 data URI)."""
    return base64.b64decode(result["data_uri"].split(",", 1)[1]).decode("utf-8")


def traits_and_prompts(workdir):
    with open(os.path.join(workdir, EXP, "viewer/index.json"), encoding="utf-8") as fh:
        index = json.load(fh)
    return [t["name"] for t in index["traits"]], [p["index"] for p in index["prompts"]]


def prompt_text(workdir, i):
    with open(os.path.join(workdir, EXP, "inference/responses", f"prompt_{i}.json"), encoding="utf-8") as fh:
        return json.load(fh)["prompt"]["text"]


def load(workdir, trait, i):
    return load_capture(os.path.join(workdir, EXP, trait, "inference/residual_stream_activations", f"prompt_{i}.pt"))


@pytest.fixture(scope="module")
def report(demo_run, tmp_path_factory):
    """`snakemake --report` of a copy of the demo: (workdir, html text, its size)."""
    workdir = str(tmp_path_factory.mktemp("report") / "demo")
    shutil.copytree(demo_run["dir"], workdir, symlinks=True)
    snakemake(workdir, "--report", "report.html")
    with open(os.path.join(workdir, "report.html"), encoding="utf-8") as fh:
        text = fh.read()
    return workdir, text, os.path.getsize(os.path.join(workdir, "report.html"))


def test_report_holds_the_tables_and_a_figure_per_trait_and_prompt_labelled_with_its_text(report):
    workdir, html, _ = report
    traits, prompts = traits_and_prompts(workdir)
    shown = prompts[:SHOWN]
    categories, results = embedded(html, "categories"), embedded(html, "results")
    assert sorted(categories) == [TABLES, CROSS, HEATMAPS, STEERING]  # the menu sorts them: tables first
    steering = [p for paths in categories[STEERING].values() for p in paths]
    assert sorted(steering) == sorted(f"{EXP}/report/steering/{trait}.png" for trait in traits), steering

    heatmaps = categories[HEATMAPS]
    assert sorted(heatmaps) == sorted(traits)
    for trait in traits:
        expected = [f"{EXP}/report/heatmaps/{trait}/prompt_{i}.png" for i in shown]
        assert sorted(heatmaps[trait]) == sorted(expected)
        for i, path in zip(shown, expected):
            label = f"{prompt_number(i, len(shown))}: {report_label(prompt_text(workdir, i))}"
            assert results[path]["labels"] == {"prompt": label, "trait": trait}
            assert prompt_text(workdir, i)[:40] in label  # the text, not a bare index
            assert results[path]["mime_type"] == "image/png"
            assert f"trait <strong>{trait}</strong>" in results[path]["caption"]
    cross = [p for paths in categories[CROSS].values() for p in paths]
    assert sorted(cross) == sorted(f"{EXP}/report/cross_trait/prompt_{i}.png" for i in shown)
    for i in shown:
        label = results[f"{EXP}/report/cross_trait/prompt_{i}.png"]["labels"]["prompt"]
        assert label == f"{prompt_number(i, len(shown))}: {report_label(prompt_text(workdir, i))}"
    for path in cross + [p for paths in heatmaps.values() for p in paths]:
        with open(os.path.join(workdir, path), "rb") as fh:
            assert fh.read(8) == PNG_MAGIC
    tables = [p for paths in categories[TABLES].values() for p in paths]
    assert sorted(tables) == [f"{EXP}/report/tables/dynamics_summary.html", f"{EXP}/report/tables/vector_quality.html"]
    assert all(results[p]["mime_type"] == "text/html" for p in tables)


def test_figure_details_are_short_and_name_no_capture_file_one_by_one(report):
    _, html, _ = report
    results = embedded(html, "results")
    for path, result in results.items():
        details = result["job_properties"]["params"]
        assert len(details) <= MAX_DETAILS, (path, details)
        assert "prompt_0.pt" not in details and "prompt_1.json" not in details  # patterns, not one path each
    heatmap = results[f"{EXP}/report/heatmaps/refusal/prompt_0.png"]["job_properties"]["params"]
    assert "point=residual_out" in heatmap and "{file}.pt" in heatmap


def test_captions_say_what_compares_across_traits_and_what_does_not(report):
    workdir, html, _ = report
    results = embedded(html, "results")
    captions = {p: " ".join(r["caption"].split()) for p, r in results.items()}  # line breaks as spaces
    description = " ".join(json.loads(re.search(r"var workflow_desc = (\".*?\");", html, re.DOTALL)[1]).split())
    for text in [*captions.values(), description]:
        assert "directly comparable" not in text
    cross = captions[f"{EXP}/report/cross_trait/prompt_0.png"]
    assert "not a stronger trait" in cross and "cosines" in cross and "timing" in cross
    heatmap = captions[f"{EXP}/report/heatmaps/refusal/prompt_0.png"]
    assert "Across traits: not these raw scores" in heatmap and "share one colour scale" in heatmap
    assert "Across traits: the timing yes (the tokens line up), raw sizes no" in description
    assert "Within one trait, across tokens and prompts: yes" in description
    assert "Across layers: cosines yes" in description
    # how to rebuild this very report, with the experiment named (else config.yaml's experiment is planned)
    assert ".venv/bin/snakemake --report report.html --config experiment=demo" in description
    assert "System Message" not in description  # every link to a category resolved


def test_the_dynamics_table_shows_every_trait_and_method_and_the_reported_prompts(report):
    workdir, html, _ = report
    results = embedded(html, "results")
    page = data_text(results[f"{EXP}/report/tables/dynamics_summary.html"])
    csv = pd.read_csv(os.path.join(workdir, EXP, "tables/dynamics_summary.csv"), keep_default_na=False,
                      na_values=[""])
    by_trait = page.split('id="by-trait"')[1].split("</table>")[0]
    per_prompt = page.split('id="per-prompt"')[1].split("</table>")[0]
    for trait, method in csv[["trait", "method"]].drop_duplicates().itertuples(index=False):
        assert f"<tr><td>{trait}</td><td>{method}</td>" in by_trait
    assert by_trait.count("<tr><td>") == len(csv[["trait", "method"]].drop_duplicates())
    assert per_prompt.count("<tr><td>") == len(csv[csv["prompt_index"] < SHOWN])  # the prompts with figures
    for text in csv[csv["prompt_index"] < SHOWN]["prompt_text"].unique():
        assert html_lib.escape(short_text(text, 50)) in per_prompt
    for column in csv.columns:  # every metric the CSV has, read at build time
        if column not in ("prompt_text", "response_text", "trait", "method", "prompt_set", "prompt_index"):
            assert column in page, column


def test_the_vector_quality_table_shows_examples_and_accuracies_per_trait(report):
    workdir, html, _ = report
    traits, _ = traits_and_prompts(workdir)
    page = data_text(embedded(html, "results")[f"{EXP}/report/tables/vector_quality.html"])
    rows = re.findall(r"<tr>(.*?)</tr>", page.split('id="vector-quality"')[1].split("</table>")[0].split("<tbody>")[1])
    assert len(rows) == len(traits)
    for trait, row in zip(sorted(traits), sorted(rows)):
        with open(os.path.join(workdir, EXP, trait, "extraction/vectors/probe_layer2_metadata.json")) as fh:
            meta = json.load(fh)
        cells = [html_lib.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        assert cells[:3] == [trait, "probe", "2"]
        assert cells[4] == f"{meta['n_positive']} / {meta['n_negative']}"
        assert cells[5] == f"{meta['train_accuracy']:.2f}"
        if meta.get("heldout_accuracy") is not None:
            assert cells[6].startswith(f"{meta['heldout_accuracy']:.2f} (")
        else:
            assert cells[6].startswith("not measured")


def test_the_report_stays_small(report):
    workdir, html, size = report
    results = embedded(html, "results")
    for path in results:
        png = os.path.getsize(os.path.join(workdir, path))
        if "/heatmaps/" in path:
            assert png <= MAX_HEATMAP_PNG, (path, png)
        elif "/cross_trait/" in path:
            assert png <= MAX_CROSS_PNG, (path, png)
    assert sum(len(r["data_uri"]) for r in results.values()) <= MAX_RESULTS
    assert size <= MAX_REPORT


def test_report_tables_summarise_any_metric_columns_and_escape_what_they_show():
    df = pd.DataFrame({
        "trait": ["a", "a", "b", "b"], "method": "probe", "prompt_set": "default", "prompt_index": [0, 1, 0, 1],
        "prompt_text": ["<b>bold</b> {x}", "second", "<b>bold</b> {x}", "second"], "response_text": "r",
        "n_prompt": [5, 7, 5, 7], "layer": 2, "peak_index": [6, 10, 5, 8], "peak_token": ["<", "\n", "x", "y"],
        "a_new_metric": [1.0, 3.0, 2.0, 2.0], "commitment_index": [pd.NA, 9, pd.NA, pd.NA],
    })
    df["commitment_index"] = df["commitment_index"].astype("Int64")
    page = dynamics_summary_html(df, {"default": [1]}, "t.csv")
    assert "layer = <code>2</code>" in page  # a column with one value is said once
    assert "<th>median a_new_metric</th>" in page and "<th>median peak_index - n_prompt</th>" in page
    by_trait = page.split('id="by-trait"')[1].split("</table>")[0]
    # columns: prompts, n_prompt, peak_index - n_prompt, a_new_metric, commitment_index (peak_token varies: left out)
    # a: peaks 1 and 3 tokens after the prompt, a commitment point in 1 of 2 prompts; b: peaks 0 and 1, none
    assert ('<tr><td>a</td><td>probe</td><td class="num">2</td><td class="num">6</td><td class="num">2</td>'
            '<td class="num">2</td><td>2 (1 of 2 have one)</td></tr>') in by_trait
    assert ('<tr><td>b</td><td>probe</td><td class="num">2</td><td class="num">6</td><td class="num">0.5</td>'
            '<td class="num">2</td><td>none of 2</td></tr>') in by_trait
    per_prompt = page.split('id="per-prompt"')[1].split("</table>")[0]
    assert per_prompt.count("<tr><td>") == 2 and "second" in per_prompt and "bold" not in per_prompt
    assert "<b>" not in dynamics_summary_html(df, {"default": [0]}, "t.csv").split("<h1>")[1]  # escaped
    assert "&lt;b&gt;bold&lt;/b&gt;" in dynamics_summary_html(df, [0], "t.csv")
    assert fmt(3.0) == "3" and fmt(0.123456) == "0.1235" and fmt(float("nan")) == "" and fmt("\n") == "\u21b5"

    rows = vector_quality_rows(
        {"own": {"method": "ica", "layer": 3, "extracted": False},
         "few": {"method": "probe", "layer": 2, "extracted": True},
         "held": {"method": "probe", "layer": 2, "extracted": True}},
        {"own": {}, "few": {"n_positive": 4, "n_negative": 5, "train_accuracy": 1.0},
         "held": {"n_positive": 40, "n_negative": 40, "train_accuracy": 1.0, "heldout_accuracy": 0.8125,
                  "heldout_n": 80}}, hidden_size=64)
    own, few, held = rows
    assert (own["examples (positive / negative)"], own["held-out accuracy"]) == ("none", "not measured")
    assert own["source"] == "brought its own vector" and "no examples" in own["notes"]
    assert few["train accuracy"] == "1.00" and "only 4 examples" in few["notes"] and "fits" in few["notes"]
    assert held["held-out accuracy"] == "0.81 (n=80)" and held["notes"] == ""
    coin = vector_quality_rows({"t": {"method": "probe", "layer": 1, "extracted": True}},
                               {"t": {"n_positive": 20, "n_negative": 20, "train_accuracy": 1.0,
                                      "heldout_accuracy": 0.5, "heldout_n": 40, "heldout": "5-fold"}})[0]
    assert coin["held-out accuracy"] == "0.50 (5-fold, n=40)" and "near chance" in coin["notes"]


def test_a_prompt_label_survives_snakemakes_wildcard_filling():
    from snakemake.io import apply_wildcards

    text = "Fill {prompt} and {x} in: " + "a" * 80
    label = apply_wildcards(report_label(text), {"prompt": "3"})  # what the report does with a label
    assert label.replace("\u200b", "") == short_text(text)
    assert len(short_text(text)) == 60 and short_text(text).endswith("\u2026")
    assert prompt_number(3, 10) == "3" and prompt_number(3, 11) == "03"


def test_figure_jobs_get_one_path_pattern_and_the_prompts_file_stems():
    from traitflow.outputs.report_tables import file_pattern, file_stems

    def response(g):  # prompt 1 in a named prompt set, which gets its own folder
        return f"e/inference/responses/{'harmful/' if g else ''}prompt_{g}.json"
    assert file_stems(response, "e/inference/responses", [0, 1]) == ["prompt_0", "harmful/prompt_1"]
    pattern = file_pattern("e/{trait}/inference/residual_stream_activations/prompt_0.pt", "prompt_0")
    assert pattern == "e/{trait}/inference/residual_stream_activations/{file}.pt"
    assert pattern.replace("{file}", "harmful/prompt_1").replace("{trait}", "t").endswith("/harmful/prompt_1.pt")


def test_the_viewers_hint_for_a_missing_index_works_as_printed(demo_copy, tmp_path):
    """Another experiment than config.yaml's (a copy of the built demo): the printed command builds its index."""
    for src, dst in ((EXP, "experiments/other"), ("manifests/demo", "manifests/other")):
        shutil.copytree(os.path.join(demo_copy, src), os.path.join(demo_copy, dst), symlinks=True)
    index = os.path.join(demo_copy, "experiments/other/viewer/index.json")
    os.remove(index)
    elsewhere = str(tmp_path / "elsewhere")
    os.makedirs(elsewhere)
    proc = subprocess.Popen([sys.executable, "-m", "traitflow.outputs.serve", "--exp", "other", "--port", "0",
                             "--workdir", demo_copy], cwd=elsewhere, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        warning = proc.stderr.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert "experiments/other/viewer/index.json not found" in warning
    command = re.search(r"`([^`]+)`", warning)[1]
    assert command.endswith("--config experiment=other")
    # as printed, from where the viewer was started, in a shell whose PATH has no virtual environment
    run = subprocess.run(command, shell=True, cwd=elsewhere, text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env={"HOME": os.environ.get("HOME", "/tmp"),
                                                        "PATH": "/usr/bin:/bin"}, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:]
    with open(index, encoding="utf-8") as fh:
        assert json.load(fh)["experiment"] == "other"


def test_the_viewers_port_hint_serves_the_same_experiment(tmp_path):
    from traitflow.outputs.serve import port_hint

    class Args:
        exp, host, workdir = "other", "127.0.0.1", str(tmp_path)
    command = port_hint(Args, 8001)
    assert command.endswith(f"-m traitflow.outputs.serve --exp other --port 8001 --workdir {tmp_path}")
    assert os.path.isabs(command.split()[0]) or command.startswith(".venv/")


def test_heatmap_figure_draws_the_captured_projections_at_the_chosen_point(demo_run):
    traits, _ = traits_and_prompts(demo_run["dir"])
    cap = load(demo_run["dir"], traits[0], 1)
    every = cap["projections"]
    n_prompt = cap["n_prompt"]
    for p, point in enumerate(POINTS):
        fig = heatmap_figure(cap, point, "a prompt")
        ax = fig.axes[0]
        assert len(fig.axes) == 2  # one panel (a short demo sequence) and the colour bar
        image = ax.images[0]
        np.testing.assert_array_equal(image.get_array(), every[:, :, p].T)  # rows: layers, columns: tokens
        limit = np.abs(every[:, :, p]).max()
        assert image.get_clim() == (-limit, limit)  # diverging scale centred on zero
        assert [t.get_text() for t in ax.get_xticklabels()] == [show_token(t) for t in cap["tokens"]]
        assert [list(line.get_xdata()) for line in ax.get_lines()] == [[n_prompt - 0.5] * 2]  # the divider
    cosine = heatmap_figure(cap, "residual_out", measure="cosine").axes[0].images[0].get_array()
    np.testing.assert_array_equal(cosine, cap["cosine"][:, :, 2].T)
    # the report's heatmaps of one trait share a colour scale: the largest |score| over its prompts
    others = [load(demo_run["dir"], traits[0], i) for i in (0, 1, 2)]
    shared = colour_limit(others, "residual_out")
    assert shared == max(np.abs(c["projections"][:, :, 2]).max() for c in others)
    for c in others:
        assert heatmap_figure(c, "residual_out", limit=shared).axes[0].images[0].get_clim() == (-shared, shared)


def test_figures_are_saved_as_palette_pngs(demo_run, tmp_path):
    from PIL import Image

    traits, _ = traits_and_prompts(demo_run["dir"])
    fig = cross_trait_figure({t: load(demo_run["dir"], t, 0) for t in traits}, 1, "residual_out", "a prompt")
    save_figure(fig, str(tmp_path / "c.png"))
    save_figure(fig, str(tmp_path / "full.png"), colours=None)  # matplotlib's RGB, for comparison
    with Image.open(tmp_path / "c.png") as small, Image.open(tmp_path / "full.png") as full:
        assert small.mode == "P" and small.size == full.size == (round(fig.get_figwidth() * 100),
                                                                  round(fig.get_figheight() * 100))
    assert os.path.getsize(tmp_path / "c.png") < 0.6 * os.path.getsize(tmp_path / "full.png")


def long_capture(n_prompt=300, n_response=200, n_layers=26):
    rng = np.random.default_rng(0)
    proj = rng.normal(size=(n_prompt + n_response, n_layers, 3)).astype(np.float32)
    return {"projections": proj, "n_prompt": n_prompt, "tokens": [f"t{k}" for k in range(n_prompt + n_response)],
            "metadata": {"trait": "x", "method": "probe", "vector_layer": 13}}


def test_heatmaps_at_a_real_models_size_stack_panels_every_token_labelled(tmp_path):
    cap = long_capture()
    n_tokens = 500
    fig = heatmap_figure(cap, "residual_out", "some prompt")
    panel_axes = [ax for ax in fig.axes if ax.images]
    assert len(panel_axes) == len(panels(n_tokens)) == 4
    shown = np.concatenate([ax.images[0].get_array() for ax in panel_axes], axis=1)
    np.testing.assert_array_equal(shown, cap["projections"][:, :, 2].T)
    labels = [t.get_text() for ax in panel_axes for t in ax.get_xticklabels()]
    assert labels == cap["tokens"]  # every token labelled exactly once
    assert max(len(ax.get_xticklabels()) for ax in panel_axes) <= TOKENS_PER_PANEL
    assert sum(len(ax.get_lines()) for ax in panel_axes) == 1  # the divider, in the panel holding token 300
    assert [int(t) for t in panel_axes[0].get_yticks()] == [0, 5, 10, 15, 20, 25]
    width, height = fig.get_size_inches()
    assert width <= 20 and width * 100 / TOKENS_PER_PANEL >= 12  # >= 12 px per token column at 100 dpi
    assert height / 4 * 100 / 26 >= 9  # >= 9 px per layer row
    save_figure(fig, str(tmp_path / "h.png"))
    with open(tmp_path / "h.png", "rb") as fh:
        assert fh.read(8) == PNG_MAGIC

    fig = cross_trait_figure({"a": cap, "b": {**cap, "projections": -cap["projections"]}}, 13, "after_attn")
    panel_axes = [ax for ax in fig.axes if ax.lines]
    assert len(panel_axes) == 4
    for trait, sign in (("a", 1), ("b", -1)):
        ys = np.concatenate([line.get_ydata() for ax in panel_axes for line in ax.get_lines()
                             if line.get_label() == trait])
        np.testing.assert_array_equal(ys, sign * cap["projections"][:, 13, 1])


def test_cross_trait_figure_draws_every_traits_trajectory_at_the_chosen_layer(demo_run):
    traits, _ = traits_and_prompts(demo_run["dir"])
    captures = {t: load(demo_run["dir"], t, 2) for t in traits}
    layer, point = 1, "after_attn"
    ax = cross_trait_figure(captures, layer, point).axes[0]
    lines = {line.get_label(): line.get_ydata() for line in ax.get_lines() if line.get_label() in traits}
    assert sorted(lines) == sorted(traits)
    for trait, cap in captures.items():
        np.testing.assert_array_equal(lines[trait], cap["projections"][:, layer, 1])


def test_a_report_layer_the_model_lacks_is_a_one_line_config_error(demo_copy):
    with open(os.path.join(demo_copy, "bad.yaml"), "w") as fh:
        fh.write("report:\n  layer: 99\n")
    proc = snakemake(demo_copy, "-n", "--configfile", "bad.yaml", check=False)
    with open(os.path.join(demo_copy, EXP, "viewer/index.json"), encoding="utf-8") as fh:
        n_layers = json.load(fh)["n_layers"]
    assert proc.returncode != 0
    assert f"config report.layer: layer 99 does not exist (the model has layers 0-{n_layers - 1})" in proc.stdout

"""`snakemake --report` on the demo, and the report figures drawing exactly the captured numbers."""

import json
import os
import re

import numpy as np
import torch
from conftest import snakemake

from traitflow.plots import cross_trait_figure, heatmap_figure, show_token

EXP = "experiments/demo"
POINTS = ["residual_in", "after_attn", "residual_out"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def embedded(html, name):
    """A JSON object the report page embeds as `var NAME = {...};`."""
    m = re.search(rf"<script id=\"{name}\">\s*var {name} = (.*?);\s*</script>", html, re.DOTALL)
    return json.loads(m[1])


def traits_and_prompts(workdir):
    with open(os.path.join(workdir, EXP, "viewer/index.json"), encoding="utf-8") as fh:
        index = json.load(fh)
    return [t["name"] for t in index["traits"]], [p["index"] for p in index["prompts"]]


def load(workdir, trait, i):
    path = os.path.join(workdir, EXP, trait, "inference/residual_stream_activations", f"prompt_{i}.pt")
    return torch.load(path, weights_only=True)


def test_report_holds_a_heatmap_per_trait_and_prompt_and_a_cross_trait_plot_per_prompt(demo_copy):
    snakemake(demo_copy, "--report", "report.html")
    with open(os.path.join(demo_copy, "report.html"), encoding="utf-8") as fh:
        html = fh.read()
    traits, prompts = traits_and_prompts(demo_copy)
    shown = prompts[:10]  # report.max_prompts defaults to 10
    categories, results = embedded(html, "categories"), embedded(html, "results")

    heatmaps = categories["Token x layer heatmaps"]
    assert sorted(heatmaps) == sorted(traits)
    for trait in traits:
        expected = [f"{EXP}/report/heatmaps/{trait}/prompt_{i}.png" for i in shown]
        assert sorted(heatmaps[trait]) == sorted(expected)
        for path in expected:
            assert results[path]["labels"] == {"trait": trait, "prompt": path.split("_")[-1][:-4]}
            assert results[path]["mime_type"] == "image/png"
            assert f"trait <strong>{trait}</strong>" in results[path]["caption"]
    cross = [p for paths in categories["Cross-trait trajectories"].values() for p in paths]
    assert sorted(cross) == sorted(f"{EXP}/report/cross_trait/prompt_{i}.png" for i in shown)
    for path in cross + [p for paths in heatmaps.values() for p in paths]:
        with open(os.path.join(demo_copy, path), "rb") as fh:
            assert fh.read(8) == PNG_MAGIC


def test_heatmap_figure_draws_the_captured_projections_at_the_chosen_point(demo_run):
    traits, _ = traits_and_prompts(demo_run["dir"])
    rec = load(demo_run["dir"], traits[0], 1)
    every = torch.cat([rec["projections"]["prompt"], rec["projections"]["response"]]).numpy()
    n_prompt = rec["prompt"]["n_tokens"]
    for p, point in enumerate(POINTS):
        ax = heatmap_figure(rec, point).axes[0]
        image = ax.images[0]
        np.testing.assert_array_equal(image.get_array(), every[:, :, p].T)  # rows: layers, columns: tokens
        limit = np.abs(every[:, :, p]).max()
        assert image.get_clim() == (-limit, limit)  # diverging scale centred on zero
        assert [t.get_text() for t in ax.get_xticklabels()] == [
            show_token(t) for t in rec["prompt"]["tokens"] + rec["response"]["tokens"]]
        assert [list(line.get_xdata()) for line in ax.get_lines()] == [[n_prompt - 0.5] * 2]  # the divider


def test_cross_trait_figure_draws_every_traits_trajectory_at_the_chosen_layer(demo_run):
    traits, _ = traits_and_prompts(demo_run["dir"])
    records = {t: load(demo_run["dir"], t, 2) for t in traits}
    layer, point = 1, "after_attn"
    ax = cross_trait_figure(records, layer, point).axes[0]
    lines = {line.get_label(): line.get_ydata() for line in ax.get_lines() if line.get_label() in traits}
    assert sorted(lines) == sorted(traits)
    for trait, rec in records.items():
        expected = torch.cat([rec["projections"]["prompt"], rec["projections"]["response"]])[:, layer, 1].numpy()
        np.testing.assert_array_equal(lines[trait], expected)


def test_a_report_layer_the_model_lacks_is_a_one_line_config_error(demo_copy):
    with open(os.path.join(demo_copy, "bad.yaml"), "w") as fh:
        fh.write("report:\n  layer: 99\n")
    proc = snakemake(demo_copy, "-n", "--configfile", "bad.yaml", check=False)
    with open(os.path.join(demo_copy, EXP, "viewer/index.json"), encoding="utf-8") as fh:
        n_layers = json.load(fh)["n_layers"]
    assert proc.returncode != 0
    assert f"config report.layer: layer 99 does not exist (the model has layers 0-{n_layers - 1})" in proc.stdout

"""`snakemake --report` on the demo, and the report figures drawing exactly the captured numbers."""

import json
import os
import re

import numpy as np
from conftest import snakemake

from traitflow.formats import load_capture
from traitflow.plots import TOKENS_PER_PANEL, cross_trait_figure, heatmap_figure, panels, save_figure, show_token

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
    return load_capture(os.path.join(workdir, EXP, trait, "inference/residual_stream_activations", f"prompt_{i}.pt"))


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

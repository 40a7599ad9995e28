// The single-layer deep dive: the residual decomposition (attention and MLP contributions),
// per-head contributions and the top MLP neurons of one layer, for the selected trait and prompt.

import { drawChart, drawMatrix, windowColumns } from "./draw.js";
import { diverging, maxAbs } from "./scales.js";
import { actions, currentName, state } from "./state.js";
import { $, fmt, note } from "./util.js";

// rec: the single-layer JSON (or null / {error}); layers: the layers that have one.
export function renderDeepDive(rec, layers, base, win, matches) {
  const parts = ["decomposition", "heads", "neurons"].map($);
  $("deepdive-title").textContent = rec && !rec.error
    ? `${state.trait}, prompt ${currentName()}, layer ${rec.layer}` : "";
  if (!rec || rec.error) {
    const text = rec ? `Could not load: ${rec.error.message}` : (layers.length
      ? "Pick a layer." : "No single-layer capture for this trait and prompt (the single-layer rule writes them).");
    parts.forEach((p) => note(p, text));
    return;
  }
  const { tokens, nPrompt } = base.toks;
  const dec = rec.decomposition || {};
  const onSelect = (t) => actions.select(t);
  if (dec.attn_contribution && dec.mlp_contribution) {
    drawChart(parts[0], {
      tokens, nPrompt, selected: state.token, onSelect, win, matches,
      series: ["residual_in", "residual_out"].filter((k) => dec[k]).map((k, i) => ({
        name: k, values: dec[k], colour: ["#999999", "#222222"][i], cls: "residual-line" })),
      bars: [{ name: "attention contribution", values: dec.attn_contribution, colour: "#e6862e", cls: "attn-bar" },
        { name: "MLP contribution", values: dec.mlp_contribution, colour: "#3a9a4a", cls: "mlp-bar" }],
    });
  } else {
    note(parts[0], "No decomposition in this file.");
  }
  const matrix = (container, rows, what) => {
    if (!rows.length) return note(container, `No ${what} in this file.`);
    const limit = maxAbs(rows);
    drawMatrix(container, {
      rows: rows.map((row) => ({ ...row, values: row.values.slice(win.start, win.end) })),
      columns: windowColumns(tokens, win), nPrompt, colour: (v) => diverging(v, limit), selected: state.token,
      onSelect, win, matches,
      describe: (row, col, v) => `${row.label}, token #${col.index} ${JSON.stringify(col.token)}: ${fmt(v)}`,
    });
  };
  matrix(parts[1], (dec.head_contributions || []).map((values, h) => ({ label: `head ${h}`, values })),
    "per-head contributions");
  const neurons = rec.top_neurons || {};
  matrix(parts[2], (neurons.indices || []).map((n, k) => ({ label: `neuron ${n}`, values: neurons.contributions[k] })),
    "top neurons");
}

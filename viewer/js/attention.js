// Attention from the selected token: head-mean weights over its context, one row per layer,
// as a matrix over the window and a canvas strip over every key.

import { drawMatrix, drawStrip, segment, windowColumns } from "./draw.js";
import { attentionColour, attentionRGB } from "./scales.js";
import { actions, state } from "./state.js";
import { $, fmt, note, showToken } from "./util.js";

// rows: [L][t + 1] weights of the selected token t (data.attentionRows), null, or {error}.
export function renderAttention(base, rows, win) {
  const t = state.token;
  const view = $("attention");
  const { tokens, nPrompt } = base.toks;
  if (!rows || rows.error) {
    $("attention-strip").getContext("2d").clearRect(0, 0, 1e4, 1e4);
    note(view, rows ? `Could not load: ${rows.error.message}`
      : "No attention for this prompt (the shared file holds none, or is missing).");
    return;
  }
  const L = rows.length;
  const end = Math.min(win.end, t + 1);
  const matrixRows = [];
  for (let l = L - 1; l >= 0; l--) {
    matrixRows.push({ label: `layer ${l}`, layer: l, values: rows[l].slice(win.start, end) });
  }
  const keyWin = { ...win, end };
  drawMatrix(view, {
    rows: matrixRows, columns: windowColumns(tokens, keyWin), nPrompt, colour: attentionColour, selected: t,
    win: keyWin,
    onSelect: (k) => actions.select(k),
    describe: (row, col, v) => `${row.label}: token #${t} attends to #${col.index} ${JSON.stringify(col.token)} `
      + `with weight ${fmt(v)}`,
  });
  drawStrip($("attention-strip"), { T: win.T, keys: t + 1, nRows: L, value: (r, k) => rows[L - 1 - r][k],
    rgb: attentionRGB, win, selected: t, nPrompt });
  view.dataset.token = t;
  $("attention-title").textContent = `token #${t} \u201c${showToken(tokens[t])}\u201d (${segment(t, nPrompt)}), `
    + `${t + 1} context tokens`
    + (win.start > 0 || end < t + 1 ? `; keys ${win.start}\u2013${end - 1} shown, every key in the strip` : "");
}

// The token x layer heatmap of the selected trait's score, its canvas strip over every token,
// and the logit lens (a row of top-1 predictions under the tokens, and in every hover).

import { LEFT, drawMatrix, drawStrip, windowColumns } from "./draw.js";
import { colourBar, diverging, divergingRGB, heatmapScale, layerGrowth, scaleNote } from "./scales.js";
import { MEASURES, actions, currentName, measureName, pointIndex, state } from "./state.js";
import { $, fmt, note, shortToken, showToken, svgEl, titled } from "./util.js";

const LENS_LABELS = 80; // room for the rotated logit-lens predictions
let heatmapMarked = false;

// score(t, l, p): the projection, or the cosine (projection / residual norm; null without norms).
export function scoreFn(cap, norms) {
  const { L, P, proj } = cap;
  if (state.measure === "cosine") {
    if (!norms) return null;
    const n = norms.data;
    return (t, l, p) => {
      const i = (t * L + l) * P + p;
      return n[i] > 0 ? proj[i] / n[i] : 0;
    };
  }
  return (t, l, p) => proj[(t * L + l) * P + p];
}

// Layer l's top-k next-token predictions after token t; [] where the lens does not cover l.
function lensTop(lens, t, l) {
  const r = lens ? lens.row(l) : -1;
  if (r < 0) return [];
  const out = [];
  for (let j = 0; j < lens.k; j++) {
    const i = (t * lens.L + r) * lens.k + j;
    out.push({ token: lens.tokens[String(lens.ids[i])] ?? `#${lens.ids[i]}`, prob: lens.probs[i] });
  }
  return out;
}

function lensText(lens, t, l) {
  const top = lensTop(lens, t, l);
  if (!top.length) return "";
  const each = top.map((p) => `${JSON.stringify(p.token)} ${(100 * p.prob).toFixed(1)}%`);
  return `layer ${l} predicts next: ` + each.join(", ");
}

// The band under the token labels: the chosen layer's top-1 prediction per token, fainter when less probable.
function lensBand(lens, tokens, win) {
  return {
    height: LENS_LABELS,
    draw: (svg, y0) => {
      const l = state.layer;
      const covered = lens.row(l) >= 0;
      const head = svgEl("text", { x: LEFT - 6, y: y0 + 12, "text-anchor": "end", class: "row-label lens-row" },
        covered ? `L${l} next:` : `L${l}: no lens`);
      svg.appendChild(titled(head, covered
        ? `The top-1 next-token prediction of layer ${l}'s residual stream (logit lens)`
        : `The logit lens covers layers ${lens.layers.join(", ")}: pick one of them to see its predictions`));
      if (!covered) return;
      for (let t = win.start; t < win.end; t++) {
        if (t % win.every !== 0 && t !== state.token) continue;
        const [top] = lensTop(lens, t, l);
        const x = LEFT + (t - win.start) * win.cw + win.cw / 2;
        const y = y0 + 4;
        const label = svgEl("text", { x, y, dy: "0.35em", transform: `rotate(-90 ${x} ${y})`, "text-anchor": "end",
          class: "lens-label", "data-token": t, "data-layer": l, "fill-opacity": (0.35 + 0.65 * top.prob).toFixed(2) },
        shortToken(top.token, 10));
        svg.appendChild(titled(label, `after #${t} ${JSON.stringify(tokens[t])}: ${lensText(lens, t, l)}`));
      }
    },
  };
}

export function renderHeatmap(base, cap, win, matches) {
  const p = pointIndex();
  const score = scoreFn(cap, base.norms);
  const view = $("heatmap");
  if (!score) {
    note(view, "No residual norms for this prompt (no shared file): cosine needs them. Pick projection.");
    $("heatmap-legend").replaceChildren();
    return;
  }
  const { tokens, nPrompt } = base.toks;
  const rows = [];
  for (let l = cap.L - 1; l >= 0; l--) {
    const values = [];
    for (let t = win.start; t < win.end; t++) values.push(score(t, l, p));
    rows.push({ label: `layer ${l}`, layer: l, values });
  }
  // Over every token, not the window: the colours stay put while the window moves.
  // auto reads how much the residual norm grows with depth (the score's own size without a shared file).
  const size = base.norms ? (t, l) => base.norms.data[(t * cap.L + l) * cap.P + p] : (t, l) => score(t, l, p);
  const growth = { factor: layerGrowth(size, cap.T, cap.L), of: base.norms ? "residual norm" : "|score|" };
  const scale = heatmapScale((t, l) => score(t, l, p), cap.T, cap.L, state.scale, growth);
  const limit = (l) => scale.limits[l];
  const lens = base.lens;
  const withLens = (text) => (text ? `\n${text}` : "");
  const svg = drawMatrix(view, {
    rows, columns: windowColumns(tokens, win), nPrompt, colour: (v, row) => diverging(v, limit(row.layer)),
    selected: state.token, onSelect: (t, r) => actions.select(t, rows[r] ? rows[r].layer : undefined), win, matches,
    band: lens ? lensBand(lens, tokens, win) : null,
    describe: (row, col, v) => `${row.label}, token #${col.index} ${JSON.stringify(col.token)}: `
      + `${measureName()} ${fmt(v)} (colour scale \u00b1${fmt(limit(row.layer))})`
      + withLens(lensText(lens, col.index, row.layer)),
  });
  svg.addEventListener("mouseover", (event) => {
    const cell = event.target.closest(".cell");
    if (!cell) return;
    const t = Number(cell.dataset.token);
    const l = Number(cell.dataset.layer);
    const proj = cap.proj[(t * cap.L + l) * cap.P + p];
    const norm = base.norms ? base.norms.data[(t * cap.L + l) * cap.P + p] : NaN;
    const lensPart = lensText(lens, t, l);
    $("heatmap-hover").textContent = `layer ${l}, token #${t} \u201c${showToken(tokens[t])}\u201d: `
      + `projection ${fmt(proj)}`
      + (Number.isFinite(norm) ? `, norm ${fmt(norm)}, cosine ${fmt(norm > 0 ? proj / norm : 0)}` : "")
      + `; colour scale \u00b1${fmt(limit(l))}`
      + (lensPart ? ` \u2014 ${lensPart}` : "");
  });
  Object.assign(view.dataset, { trait: state.trait, prompt: state.prompt, point: state.point, measure: state.measure,
    start: win.start, end: win.end, lens: lens ? "yes" : "no", scale: scale.mode, clipped: scale.clipped });
  if (scale.mode === "layer") {
    colourBar($("heatmap-legend"), 1, `${MEASURES[state.measure]}, each layer on its own scale (hover a cell)`,
      { ticks: ["\u2212scale", "0", "+scale"], note: scaleNote(scale) });
  } else {
    colourBar($("heatmap-legend"), scale.common, MEASURES[state.measure], { note: scaleNote(scale) });
  }
  $("heatmap-title").textContent = `${state.trait}, prompt ${currentName()}, ${state.point}, ${measureName()}`;
  drawStrip($("heatmap-strip"), { T: cap.T, nRows: cap.L, value: (r, t) => score(t, cap.L - 1 - r, p),
    rgb: (v, r) => divergingRGB(v, limit(cap.L - 1 - r)), win, selected: state.token, nPrompt, matches });
  if (!heatmapMarked) {
    heatmapMarked = true;
    performance.mark("traitflow-heatmap-drawn");
  }
}

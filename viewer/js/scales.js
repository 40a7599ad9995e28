// Colour scales and their keys: a diverging red/blue scale for scores, white to purple for attention.

import { clamp, el, fmt, svgEl } from "./util.js";

const DIVERGING = [[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]]; // RdBu

export function divergingRGB(v, limit) {
  const x = clamp(limit > 0 ? v / limit : 0, -1, 1);
  const pos = ((x + 1) / 2) * (DIVERGING.length - 1);
  const i = Math.min(Math.floor(pos), DIVERGING.length - 2);
  const f = pos - i;
  return DIVERGING[i].map((a, k) => Math.round(a + f * (DIVERGING[i + 1][k] - a)));
}

export function diverging(v, limit) {
  return Number.isFinite(v) ? `rgb(${divergingRGB(v, limit).join(",")})` : "#dddddd";
}

// Attention weights (0 to 1): white to purple on an absolute scale, so tokens compare;
// the square root keeps small weights visible beside an attention sink.
export function attentionRGB(v) {
  const f = Math.sqrt(clamp(v, 0, 1));
  return [255, 255, 255].map((a, k) => Math.round(a + f * ([63, 0, 125][k] - a)));
}

export function attentionColour(v) {
  return `rgb(${attentionRGB(v).join(",")})`;
}

const QUANTILE = 0.99; // a range is this quantile of |score|: a few extreme cells are clipped, not the scale
const FAINT = 0.2; // a layer whose range is under this share of the common one is drawn nearly white
const GROWTH = 4; // auto: per layer when the typical |value| grows more than this many times across layers

// The QUANTILE (nearest rank) of |v| over the finite values; 0 when there are none.
export function robustLimit(values) {
  const sorted = Float64Array.from(values.filter(Number.isFinite), Math.abs).sort();
  return sorted.length ? sorted[Math.max(0, Math.ceil(QUANTILE * sorted.length) - 1)] : 0;
}

// How many times the typical |value(t, l)| (the median over every token but the first) of its largest layer
// is that of its smallest: a real model's residual norm grows ~16x over SmolLM2's 30 layers, 2x over the demo's 4.
export function layerGrowth(value, T, L) {
  const medians = [];
  for (let l = 0; l < L; l++) {
    const a = [];
    for (let t = T > 1 ? 1 : 0; t < T; t++) a.push(Math.abs(value(t, l)));
    a.sort((x, y) => x - y);
    medians.push(a.length % 2 ? a[(a.length - 1) / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2);
  }
  const lo = Math.min(...medians);
  return lo > 0 ? Math.max(...medians) / lo : Infinity;
}

// The heatmap's scale for score(t, l) over T tokens and L layers: limits[l] for each layer's colours, each
// the QUANTILE of |score| over every token but the first (an attention sink carries massive activations
// on it in most models; its cells are clipped like any other). mode auto: per layer when growth.factor
// (layerGrowth of growth.of) exceeds GROWTH, else one scale for every layer.
export function heatmapScale(score, T, L, mode, growth) {
  const own = [];
  const every = [];
  for (let l = 0; l < L; l++) {
    const values = [];
    for (let t = T > 1 ? 1 : 0; t < T; t++) values.push(score(t, l));
    own.push(robustLimit(values));
    for (const v of values) every.push(v);
  }
  const common = robustLimit(every);
  const resolved = mode === "layer" || mode === "sequence" ? mode : (growth.factor > GROWTH ? "layer" : "sequence");
  const limits = resolved === "layer" ? own : own.map(() => common);
  let clipped = 0;
  for (let l = 0; l < L; l++) for (let t = 0; t < T; t++) if (Math.abs(score(t, l)) > limits[l]) clipped++;
  return { mode: resolved, auto: mode === "auto", growth, limits, common, clipped, cells: T * L,
    faint: own.filter((s) => s < FAINT * common).length };
}

// The legend's line under the caption: where the scale clips, how many cells it clips, and why auto chose it.
export function scaleNote(scale) {
  const beyond = `${scale.clipped} of ${scale.cells} cells beyond it, drawn at full colour`;
  const { factor, of } = scale.growth;
  const grows = `the typical ${of} grows ${factor === Infinity ? "from 0" : `${factor.toFixed(1)}x`} across layers`;
  if (scale.mode === "layer") {
    const lo = Math.min(...scale.limits);
    const hi = Math.max(...scale.limits);
    return `each layer clipped at its own \u00b1${fmt(lo)} to \u00b1${fmt(hi)} (99th percentile of |score|, first `
      + `token left out); ${beyond}` + (scale.auto ? `; per layer as ${grows}` : "");
  }
  return `clipped at \u00b1${fmt(scale.common)} (99th percentile of |score|, first token left out); ${beyond}`
    + (scale.faint ? `; ${scale.faint} layer${scale.faint > 1 ? "s" : ""} nearly white at it (try per layer)` : "");
}

export function maxAbs(rows) {
  let m = 0;
  for (const row of rows) for (const v of row.values) if (Number.isFinite(v)) m = Math.max(m, Math.abs(v));
  return m;
}

export function legend(items) {
  const list = el("ul", { class: "legend-items" });
  for (const item of items) {
    const swatch = svgEl("svg", { width: 14, height: 10 });
    swatch.appendChild(svgEl("rect", { width: 14, height: 10, fill: item.colour }));
    const entry = el("li");
    entry.append(swatch, document.createTextNode(" " + item.name));
    list.appendChild(entry);
  }
  return list;
}

// ticks: the three labels under the bar (default: -limit, 0, +limit); note: a line of text under the bar.
export function colourBar(container, limit, caption, { ticks, note } = {}) {
  const width = 240;
  const svg = svgEl("svg", { width: width + 620, height: 34 });
  const steps = 48;
  for (let i = 0; i < steps; i++) {
    const v = -limit + (2 * limit * (i + 0.5)) / steps;
    svg.appendChild(svgEl("rect", { x: 24 + (i * width) / steps, y: 2, width: width / steps + 0.5, height: 12,
      fill: diverging(v, limit) }));
  }
  const labels = ticks || [fmt(-limit), fmt(0), fmt(limit)];
  [24, 24 + width / 2, 24 + width].forEach((x, i) => {
    svg.appendChild(svgEl("text", { x, y: 28, "text-anchor": "middle", class: "tick" }, labels[i]));
  });
  svg.appendChild(svgEl("text", { x: width + 44, y: 12, class: "tick" }, caption));
  container.replaceChildren(svg);
  if (note) container.appendChild(el("p", { class: "scale-note" }, note));
}

"use strict";
// traitflow viewer: plain JS + SVG over the JSON files one experiment's workflow wrote.
// Data reaches the page only through textContent and SVG attributes, never as HTML:
// prompts and tokens are arbitrary text (they can hold markup).

const SVG_NS = "http://www.w3.org/2000/svg";
const CELL = 18; // px per token column, shared by every token-aligned view so they line up
const ROW = 18; // px per matrix row
const LEFT = 74; // room for row labels and the y axis
const TOP = 22; // room for the prompt / response labels
const LABELS = 86; // room for the rotated token labels
const CHART_HEIGHT = 200;
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const DIVERGING = [[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]]; // RdBu
const EXPERIMENT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

const $ = (id) => document.getElementById(id);
const state = { exp: null, index: null, trait: null, prompt: null, point: null, layer: null,
  token: null, method: null, deepLayer: null }; // token null: the first response token
const cache = new Map();
let renderId = 0;

// ---------- small DOM helpers (text only) ----------

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function titled(node, text) {
  node.appendChild(svgEl("title", {}, text));
  return node;
}

function note(container, text) {
  container.replaceChildren(el("p", { class: "note" }, text));
}

// A token as a short one-line label: whitespace and control characters made visible.
function showToken(token) {
  const visible = String(token)
    .replace(/[\u0000-\u001f\u007f]/g, (c) => ({ "\n": "\u21b5", "\t": "\u21e5", "\r": "\u240d" })[c]
      || "\\x" + c.charCodeAt(0).toString(16).padStart(2, "0"))
    .replace(/ /g, "\u00b7");
  return visible === "" ? "\u2205" : visible;
}

function shortToken(token, max = 12) {
  const s = showToken(token);
  return s.length > max ? s.slice(0, max - 1) + "\u2026" : s;
}

function fmt(v) {
  return Number.isFinite(v) ? v.toFixed(Math.abs(v) >= 100 ? 1 : 3) : "n/a";
}

// ---------- colour scales ----------

function diverging(v, limit) {
  const x = Math.max(-1, Math.min(1, limit > 0 ? v / limit : 0));
  const pos = ((x + 1) / 2) * (DIVERGING.length - 1);
  const i = Math.min(Math.floor(pos), DIVERGING.length - 2);
  const f = pos - i;
  const c = DIVERGING[i].map((a, k) => Math.round(a + f * (DIVERGING[i + 1][k] - a)));
  return `rgb(${c.join(",")})`;
}

// Attention weights (0 to 1): white to purple on an absolute scale, so tokens compare;
// the square root keeps small weights visible beside an attention sink.
function attentionColour(v) {
  const f = Math.sqrt(Math.min(1, Math.max(0, v)));
  const c = [255, 255, 255].map((a, k) => Math.round(a + f * ([63, 0, 125][k] - a)));
  return `rgb(${c.join(",")})`;
}

function maxAbs(rows) {
  return rows.reduce((m, row) => row.values.reduce((mm, v) => Math.max(mm, Math.abs(v)), m), 0);
}

// ---------- data ----------

function experimentUrl(relpath) {
  return `../experiments/${encodeURIComponent(state.exp)}/` + relpath.split("/").map(encodeURIComponent).join("/");
}

async function getJSON(url) {
  if (!cache.has(url)) {
    cache.set(url, fetch(url).then((r) => {
      if (!r.ok) throw new Error(`${decodeURIComponent(url)}: HTTP ${r.status}`);
      return r.json();
    }));
  }
  try {
    return await cache.get(url);
  } catch (err) {
    cache.delete(url);
    throw err;
  }
}

function files(trait, prompt) {
  return ((state.index.files || {})[trait] || {})[String(prompt)] || {};
}

// An all-layers record with prompt and response joined: proj[token][layer][point].
function capture(rec) {
  return {
    rec,
    tokens: rec.prompt.tokens.concat(rec.response.tokens),
    nPrompt: rec.prompt.n_tokens,
    proj: rec.projections.prompt.concat(rec.projections.response),
    nLayers: rec.metadata.n_layers,
  };
}

// Token t's attention row at one layer: its prompt-matrix row (causal: the first t+1
// entries) for a prompt token, the stored row for a response token.
function attentionRow(cap, t, layer) {
  const key = "layer_" + layer;
  const w = cap.rec.attention_weights;
  return t < cap.nPrompt ? w.prompt[key][t].slice(0, t + 1) : w.response[t - cap.nPrompt][key];
}

function load(relpath, transform = (x) => x) {
  if (!relpath) return Promise.resolve(null);
  return getJSON(experimentUrl(relpath)).then(transform).catch((error) => ({ error }));
}

// ---------- drawing: token axis, matrices, charts ----------

function segment(t, nPrompt) {
  return t < nPrompt ? "prompt" : "response";
}

// Token labels under a plot, the prompt/response divider, and the selected column.
function tokenAxis(svg, columns, nPrompt, plotHeight, selected) {
  const bottom = TOP + plotHeight;
  const first = columns.findIndex((c) => c.index >= nPrompt);
  svg.appendChild(svgEl("text", { x: LEFT, y: 14, class: "segment-label" }, "prompt"));
  if (first > 0) {
    const x = LEFT + first * CELL;
    svg.appendChild(svgEl("line", { x1: x, x2: x, y1: TOP - 4, y2: bottom + 4, class: "divider" }));
    svg.appendChild(svgEl("text", { x: x + 3, y: 14, class: "segment-label" }, "response"));
  }
  columns.forEach((col, c) => {
    const x = LEFT + c * CELL + CELL / 2;
    const y = bottom + 6;
    const label = svgEl("text", {
      x, y, dy: "0.35em", transform: `rotate(-90 ${x} ${y})`, "text-anchor": "end",
      class: "token-label" + (col.index === selected ? " selected" : ""), "data-token": col.index,
    }, shortToken(col.token));
    svg.appendChild(titled(label, `#${col.index} ${JSON.stringify(col.token)} (${segment(col.index, nPrompt)})`));
  });
  const c = columns.findIndex((col) => col.index === selected);
  if (c >= 0) {
    svg.appendChild(svgEl("rect", { x: LEFT + c * CELL, y: TOP - 2, width: CELL, height: plotHeight + 4,
      class: "selection" }));
  }
}

function clickable(svg, onSelect) {
  svg.addEventListener("click", (event) => {
    const target = event.target.closest("[data-token]");
    if (target) onSelect(Number(target.dataset.token), target.dataset.row);
  });
}

// rows: [{label, values}] drawn top to bottom; columns: [{index, token}], one per value.
function drawMatrix(container, { rows, columns, nPrompt, colour, selected, onSelect, describe }) {
  const plotHeight = rows.length * ROW;
  const svg = svgEl("svg", { width: LEFT + columns.length * CELL + 12, height: TOP + plotHeight + LABELS,
    class: "matrix" });
  rows.forEach((row, r) => {
    svg.appendChild(svgEl("text", { x: LEFT - 6, y: TOP + r * ROW + ROW / 2, dy: "0.35em", "text-anchor": "end",
      class: "row-label" }, row.label));
    row.values.forEach((v, c) => {
      const rect = svgEl("rect", { x: LEFT + c * CELL, y: TOP + r * ROW, width: CELL, height: ROW,
        fill: colour(v), class: "cell", "data-row": r, "data-token": columns[c].index, "data-value": v,
        ...(row.layer === undefined ? {} : { "data-layer": row.layer }) });
      svg.appendChild(titled(rect, describe(row, columns[c], v)));
    });
  });
  tokenAxis(svg, columns, nPrompt, plotHeight, selected);
  clickable(svg, onSelect);
  container.replaceChildren(svg);
}

function niceStep(span) {
  const raw = span / 4;
  const mag = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
}

// A token-aligned chart: lines (series) and side-by-side bars per token; decorate(geometry)
// returns extra SVG nodes (dynamics markers) drawn under the lines.
function drawChart(container, { tokens, nPrompt, series, bars = [], selected, onSelect, decorate }) {
  const values = series.concat(bars).flatMap((s) => s.values).filter(Number.isFinite);
  let lo = Math.min(0, ...values);
  let hi = Math.max(0, ...values);
  if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
  const pad = (hi - lo) * 0.05;
  lo -= pad; hi += pad;
  const g = {
    x: (t) => LEFT + t * CELL + CELL / 2,
    y: (v) => TOP + ((hi - v) / (hi - lo)) * CHART_HEIGHT,
    top: TOP, bottom: TOP + CHART_HEIGHT,
  };
  const svg = svgEl("svg", { width: LEFT + tokens.length * CELL + 12, height: TOP + CHART_HEIGHT + LABELS,
    class: "chart" });
  const step = niceStep(hi - lo);
  for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) {
    svg.appendChild(svgEl("line", { x1: LEFT, x2: LEFT + tokens.length * CELL, y1: g.y(v), y2: g.y(v),
      class: Math.abs(v) < step / 2 ? "zero-line" : "grid-line" }));
    svg.appendChild(svgEl("text", { x: LEFT - 6, y: g.y(v), dy: "0.35em", "text-anchor": "end", class: "tick" },
      Number(v.toFixed(6)).toString()));
  }
  if (decorate) decorate(g).forEach((node) => svg.appendChild(node));
  const barWidth = (CELL - 4) / Math.max(1, bars.length);
  bars.forEach((bar, b) => bar.values.forEach((v, t) => {
    if (!Number.isFinite(v)) return;
    const rect = svgEl("rect", { x: LEFT + t * CELL + 2 + b * barWidth, y: Math.min(g.y(v), g.y(0)), width: barWidth,
      height: Math.abs(g.y(v) - g.y(0)), fill: bar.colour, class: "bar " + bar.cls, "data-token": t, "data-value": v });
    svg.appendChild(titled(rect, `${bar.name}, token #${t} ${JSON.stringify(tokens[t])}: ${fmt(v)}`));
  }));
  for (const s of series) {
    let d = "";
    s.values.forEach((v, t) => {
      if (Number.isFinite(v)) d += `${d && Number.isFinite(s.values[t - 1]) ? "L" : "M"}${g.x(t)},${g.y(v)}`;
    });
    svg.appendChild(svgEl("path", { d, stroke: s.colour, class: "line " + s.cls, "data-name": s.name }));
    s.values.forEach((v, t) => {
      if (!Number.isFinite(v)) return;
      const dot = svgEl("circle", { cx: g.x(t), cy: g.y(v), r: 2.6, fill: s.colour, class: "point", "data-token": t,
        "data-name": s.name, "data-value": v });
      svg.appendChild(titled(dot, `${s.name}, token #${t} ${JSON.stringify(tokens[t])}: ${fmt(v)}`));
    });
  }
  tokenAxis(svg, tokens.map((token, index) => ({ index, token })), nPrompt, CHART_HEIGHT, selected);
  clickable(svg, onSelect);
  container.replaceChildren(legend(series.concat(bars)), svg);
}

function legend(items) {
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

function colourBar(container, limit, caption) {
  const width = 240;
  const svg = svgEl("svg", { width: width + 300, height: 34 });
  const steps = 48;
  for (let i = 0; i < steps; i++) {
    const v = -limit + (2 * limit * (i + 0.5)) / steps;
    svg.appendChild(svgEl("rect", { x: 24 + (i * width) / steps, y: 2, width: width / steps + 0.5, height: 12,
      fill: diverging(v, limit) }));
  }
  [[-limit, 24], [0, 24 + width / 2], [limit, 24 + width]].forEach(([v, x]) => {
    svg.appendChild(svgEl("text", { x, y: 28, "text-anchor": "middle", class: "tick" }, fmt(v)));
  });
  svg.appendChild(svgEl("text", { x: width + 44, y: 12, class: "tick" }, caption));
  container.replaceChildren(svg);
}

// ---------- dynamics markers ----------

function persistentTokens(scores, dyn) {
  const peak = dyn.peak;
  const threshold = dyn.persistence && dyn.persistence.threshold;
  if (!peak || threshold === null || threshold === undefined) return [];
  const sign = Math.sign(peak.score);
  const hits = [];
  for (let t = peak.index + 1; t < scores.length; t++) {
    if (sign * (scores[t] - threshold) > 0) hits.push(t);
  }
  return hits;
}

function markers(g, scores, dyn, colour, label) {
  const nodes = [];
  for (const t of persistentTokens(scores, dyn)) {
    nodes.push(titled(svgEl("rect", { x: g.x(t) - CELL / 2, y: g.top, width: CELL, height: g.bottom - g.top,
      fill: colour, class: "persistence-marker", "data-token": t }), `${label}: persists beyond the threshold`));
  }
  if (dyn.commitment_point) {
    const x = g.x(dyn.commitment_point.index);
    nodes.push(titled(svgEl("line", { x1: x, x2: x, y1: g.top, y2: g.bottom, stroke: colour,
      class: "commitment-marker", "data-token": dyn.commitment_point.index }),
    `${label}: commitment point at token #${dyn.commitment_point.index}`));
  }
  if (dyn.peak) {
    nodes.push(titled(svgEl("circle", { cx: g.x(dyn.peak.index), cy: g.y(dyn.peak.score), r: 7, stroke: colour,
      class: "peak-marker", "data-token": dyn.peak.index }),
    `${label}: peak ${fmt(dyn.peak.score)} at token #${dyn.peak.index}`));
  }
  return nodes;
}

function dynamicsMethod(dyn) {
  const methods = Object.keys(dyn.scores || {});
  return methods.includes(state.method) ? state.method : methods[0];
}

// ---------- views ----------

function traitColour(trait) {
  return PALETTE[state.index.traits.findIndex((t) => t.name === trait) % PALETTE.length];
}

function pointIndex() {
  return state.index.sublayers.indexOf(state.point);
}

function renderTokenStrip(cap) {
  const strip = $("token-strip");
  strip.replaceChildren(...cap.tokens.map((token, t) => {
    const span = el("span", { class: `token ${segment(t, cap.nPrompt)}${t === state.token ? " selected" : ""}`,
      "data-token": t, title: `#${t} ${JSON.stringify(token)}` }, showToken(token));
    span.addEventListener("click", () => select(t));
    return span;
  }));
}

function renderHeatmap(cap) {
  const p = pointIndex();
  const rows = [];
  for (let l = cap.nLayers - 1; l >= 0; l--) {
    rows.push({ label: `layer ${l}`, layer: l, values: cap.proj.map((tok) => tok[l][p]) });
  }
  const limit = maxAbs(rows);
  const view = $("heatmap");
  drawMatrix(view, {
    rows, columns: cap.tokens.map((token, index) => ({ index, token })), nPrompt: cap.nPrompt,
    colour: (v) => diverging(v, limit), selected: state.token,
    onSelect: (t, r) => select(t, rows[r] ? rows[r].layer : undefined),
    describe: (row, col, v) => `${row.label}, token #${col.index} ${JSON.stringify(col.token)}: ${fmt(v)}`,
  });
  Object.assign(view.dataset, { trait: state.trait, prompt: state.prompt, point: state.point });
  colourBar($("heatmap-legend"), limit, "projection onto the trait vector");
  $("heatmap-title").textContent = `${state.trait}, prompt ${state.prompt}, ${state.point}`;
}

function renderAttention(cap) {
  const t = state.token;
  const rows = [];
  for (let l = cap.nLayers - 1; l >= 0; l--) rows.push({ label: `layer ${l}`, layer: l, values: attentionRow(cap, t, l) });
  const view = $("attention");
  drawMatrix(view, {
    rows, columns: cap.tokens.slice(0, t + 1).map((token, index) => ({ index, token })), nPrompt: cap.nPrompt,
    colour: attentionColour, selected: t, onSelect: (k) => select(k),
    describe: (row, col, v) => `${row.label}: token #${t} attends to #${col.index} ${JSON.stringify(col.token)} `
      + `with weight ${fmt(v)}`,
  });
  view.dataset.token = t;
  $("attention-title").textContent = `token #${t} \u201c${showToken(cap.tokens[t])}\u201d (${segment(t, cap.nPrompt)}), `
    + `${t + 1} context tokens`;
}

function renderTrajectories(caps, dyns) {
  const p = pointIndex();
  const traits = state.index.traits.map((t) => t.name);
  const present = traits.filter((_, k) => caps[k] && !caps[k].error);
  const view = $("trajectories");
  if (!present.length) return note(view, "No all-layers JSON for this prompt.");
  const ref = caps[traits.indexOf(present[0])];
  const series = present.map((name) => ({
    name, colour: traitColour(name), cls: "trait-line",
    values: caps[traits.indexOf(name)].proj.map((tok) => tok[state.layer][p]),
  }));
  drawChart(view, {
    tokens: ref.tokens, nPrompt: ref.nPrompt, series, selected: state.token, onSelect: (t) => select(t),
    decorate: (g) => present.flatMap((name, k) => {
      const dyn = dyns[traits.indexOf(name)];
      if (!dyn || dyn.error || dyn.layer !== state.layer || dyn.point !== state.point) return [];
      const method = dynamicsMethod(dyn);
      return method ? markers(g, series[k].values, dyn.dynamics[method], series[k].colour, `${name} (${method})`) : [];
    }),
  });
  Object.assign(view.dataset, { layer: state.layer, point: state.point, traits: present.length });
  const missing = traits.filter((name) => !present.includes(name));
  $("trajectory-title").textContent = `prompt ${state.prompt}, layer ${state.layer}, ${state.point}`
    + (missing.length ? ` (no capture for: ${missing.join(", ")})` : "");
}

function renderDynamics(dyn) {
  const view = $("dynamics");
  const summary = $("dynamics-summary");
  const methodSelect = $("method-select");
  if (!dyn || dyn.error) {
    methodSelect.replaceChildren();
    summary.replaceChildren();
    $("dynamics-title").textContent = "";
    return note(view, dyn ? `Could not load: ${dyn.error.message}`
      : "No dynamics for this trait and prompt (the dynamics rule writes them).");
  }
  const method = dynamicsMethod(dyn);
  fillSelect(methodSelect, Object.keys(dyn.scores).map((m) => [m, m]), method);
  const scores = dyn.scores[method];
  const d = dyn.dynamics[method];
  const colour = traitColour(state.trait);
  const velocity = scores.map((_, t) => (t > 0 ? d.velocity[t - 1] : NaN)); // token t: the change it brought
  drawChart(view, {
    tokens: dyn.tokens, nPrompt: dyn.n_prompt, selected: state.token, onSelect: (t) => select(t),
    series: [{ name: `${state.trait} score (${method})`, values: scores, colour, cls: "dynamics-line" }],
    bars: [{ name: "velocity (change from the previous token)", values: velocity, colour: "#bbbbbb", cls: "velocity" }],
    decorate: (g) => markers(g, scores, d, colour, method),
  });
  view.dataset.method = method;
  const tok = (i) => `#${i} \u201c${showToken(dyn.tokens[i])}\u201d`;
  const lines = [
    d.peak ? `Peak: ${fmt(d.peak.score)} at token ${tok(d.peak.index)}` : "Peak: none",
    d.commitment_point ? `Commitment point: token ${tok(d.commitment_point.index)}` : "Commitment point: none (never settles)",
    `Persistence: ${d.persistence.count} tokens after the peak beyond ${fmt(d.persistence.threshold)} `
      + `(longest run ${d.persistence.longest_run})`,
    `Peak velocity: ${fmt(d.peak_velocity)}; mean |velocity|: ${fmt(d.mean_abs_velocity)}`,
  ];
  summary.replaceChildren(...lines.map((line) => el("p", {}, line)));
  $("dynamics-title").textContent = `${state.trait}, layer ${dyn.layer}, ${dyn.point}`
    + (dyn.span ? `, metrics over the ${dyn.span} tokens` : "");
}

function renderDeepDive(rec, layers) {
  const parts = ["decomposition", "heads", "neurons"].map($);
  $("deepdive-title").textContent = rec && !rec.error ? `${state.trait}, prompt ${state.prompt}, layer ${rec.layer}` : "";
  if (!rec || rec.error) {
    const text = rec ? `Could not load: ${rec.error.message}` : (layers.length
      ? "Pick a layer." : "No single-layer capture for this trait and prompt (the single-layer rule writes them).");
    parts.forEach((p) => note(p, text));
    return;
  }
  const tokens = rec.prompt.tokens.concat(rec.response.tokens);
  const nPrompt = rec.prompt.n_tokens;
  const columns = tokens.map((token, index) => ({ index, token }));
  const dec = rec.decomposition || {};
  const onSelect = (t) => select(t);
  if (dec.attn_contribution && dec.mlp_contribution) {
    drawChart(parts[0], {
      tokens, nPrompt, selected: state.token, onSelect,
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
      rows, columns, nPrompt, colour: (v) => diverging(v, limit), selected: state.token, onSelect,
      describe: (row, col, v) => `${row.label}, token #${col.index} ${JSON.stringify(col.token)}: ${fmt(v)}`,
    });
  };
  matrix(parts[1], (dec.head_contributions || []).map((values, h) => ({ label: `head ${h}`, values })),
    "per-head contributions");
  const neurons = rec.top_neurons || {};
  matrix(parts[2], (neurons.indices || []).map((n, k) => ({ label: `neuron ${n}`, values: neurons.contributions[k] })),
    "top neurons");
}

// ---------- controls and state ----------

function fillSelect(select, options, value) {
  select.replaceChildren(...options.map(([v, text]) => el("option", { value: v }, text)));
  select.value = String(value);
}

function shortText(text, max = 70) {
  const one = text.replace(/\s+/g, " ");
  return one.length > max ? one.slice(0, max - 1) + "\u2026" : one;
}

function syncUrl() {
  const params = new URLSearchParams({ exp: state.exp, trait: state.trait, prompt: state.prompt,
    point: state.point, layer: state.layer });
  if (state.token !== null) params.set("token", state.token);
  history.replaceState(null, "", "?" + params.toString());
}

function select(token, layer) {
  state.token = token;
  if (layer !== undefined) {
    state.layer = layer;
    $("layer-select").value = String(layer);
  }
  update();
}

function setupControls() {
  const ix = state.index;
  fillSelect($("trait-select"), ix.traits.map((t) => [t.name, `${t.name} (${t.method}, layer ${t.vector_layer})`]),
    state.trait);
  fillSelect($("prompt-select"), ix.prompts.map((p) => [p.index, `${p.index}: ${shortText(p.text)}`]), state.prompt);
  fillSelect($("point-select"), ix.sublayers.map((s) => [s, s]), state.point);
  fillSelect($("layer-select"), [...Array(ix.n_layers).keys()].map((l) => [l, `layer ${l}`]), state.layer);
  const on = (id, apply) => $(id).addEventListener("change", (e) => { apply(e.target.value); update(); });
  on("trait-select", (v) => { state.trait = v; });
  on("prompt-select", (v) => { state.prompt = Number(v); state.token = null; });
  on("point-select", (v) => { state.point = v; });
  on("layer-select", (v) => { state.layer = Number(v); });
  on("method-select", (v) => { state.method = v; });
  on("deepdive-layer-select", (v) => { state.deepLayer = Number(v); });
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "SELECT" || !["ArrowLeft", "ArrowRight"].includes(e.key)) return;
    e.preventDefault();
    select(Math.max(0, (state.token || 0) + (e.key === "ArrowRight" ? 1 : -1)));
  });
}

function safely(view, draw) {
  try {
    draw();
  } catch (err) {
    note($(view), `Could not draw this view: ${err.message}`);
  }
}

async function update() {
  const id = ++renderId;
  document.body.dataset.state = "loading";
  const ix = state.index;
  const traits = ix.traits.map((t) => t.name);
  const prompt = ix.prompts.find((p) => p.index === state.prompt);
  $("prompt-text").textContent = prompt.text;
  $("response-text").textContent = prompt.response_text;
  const layers = Object.keys(files(state.trait, state.prompt).single_layer || {}).map(Number);
  if (!layers.includes(state.deepLayer)) state.deepLayer = layers.length ? layers[0] : null;
  fillSelect($("deepdive-layer-select"), layers.map((l) => [l, `layer ${l}`]), state.deepLayer);
  const [caps, dyns, deep] = await Promise.all([
    Promise.all(traits.map((t) => load(files(t, state.prompt).all_layers, capture))),
    Promise.all(traits.map((t) => load(files(t, state.prompt).dynamics))),
    load((files(state.trait, state.prompt).single_layer || {})[state.deepLayer]),
  ]);
  if (id !== renderId) return; // a newer selection is being drawn
  const cap = caps[traits.indexOf(state.trait)];
  if (cap && !cap.error) {
    if (state.token === null) state.token = Math.min(cap.nPrompt, cap.tokens.length - 1);
    state.token = Math.min(state.token, cap.tokens.length - 1);
  }
  syncUrl();
  if (!cap || cap.error) {
    const text = cap ? `Could not load: ${cap.error.message}`
      : "No all-layers JSON for this trait and prompt (capture.save_json off, or the capture failed).";
    ["token-strip", "heatmap", "attention"].forEach((v) => note($(v), text));
    $("heatmap-legend").replaceChildren();
  } else {
    safely("token-strip", () => renderTokenStrip(cap));
    safely("heatmap", () => renderHeatmap(cap));
    safely("attention", () => renderAttention(cap));
  }
  safely("trajectories", () => renderTrajectories(caps, dyns));
  safely("dynamics", () => renderDynamics(dyns[traits.indexOf(state.trait)]));
  safely("decomposition", () => renderDeepDive(deep, layers));
  document.body.dataset.state = "ready";
}

async function main() {
  const params = new URLSearchParams(location.search);
  state.exp = params.get("exp") || "demo";
  if (!EXPERIMENT_NAME.test(state.exp)) {
    $("message").textContent = `Not an experiment name: ${state.exp}`;
    return;
  }
  try {
    state.index = await getJSON(experimentUrl("viewer/index.json"));
  } catch (err) {
    $("message").textContent = `No viewer index for experiment "${state.exp}" (${err.message}). Build it with: `
      + `snakemake --cores 1 experiments/${state.exp}/viewer/index.json`;
    document.body.dataset.state = "error";
    return;
  }
  const ix = state.index;
  if (!ix.traits.length || !ix.prompts.length) {
    $("message").textContent = `Experiment "${state.exp}" has no captured traits or prompts yet.`;
    document.body.dataset.state = "error";
    return;
  }
  const names = ix.traits.map((t) => t.name);
  const trait = ix.traits.find((t) => t.name === params.get("trait")) || ix.traits[0];
  state.trait = trait.name;
  const prompt = Number(params.get("prompt"));
  state.prompt = ix.prompts.some((p) => p.index === prompt) ? prompt : ix.prompts[0].index;
  state.point = ix.sublayers.includes(params.get("point")) ? params.get("point") : ix.sublayers[ix.sublayers.length - 1];
  const layer = Number(params.get("layer"));
  const defaultLayer = Number.isInteger(trait.vector_layer) ? trait.vector_layer : Math.floor(ix.n_layers / 2);
  state.layer = params.has("layer") && Number.isInteger(layer) && layer >= 0 && layer < ix.n_layers ? layer : defaultLayer;
  const token = Number(params.get("token"));
  state.token = params.has("token") && Number.isInteger(token) && token >= 0 ? token : null;
  $("experiment-info").textContent = `experiment ${ix.experiment}, model ${ix.model}, ${ix.n_layers} layers, `
    + `${names.length} traits, ${ix.prompts.length} prompts`;
  setupControls();
  await update();
}

main();

"use strict";
// traitflow viewer: plain JS + SVG (and two canvas strips) over the files one experiment's workflow wrote.
// Data reaches the page only through textContent and SVG attributes, never as HTML:
// prompts and tokens are arbitrary text (they can hold markup).
//
// What it loads (docs/formats.md): the viewer index, the overview (one small file), and for one
// prompt its tokens, every trait's projections (small JSON), and from the shared per-prompt
// .safetensors file only byte ranges: the header, the residual norms, the logit lens, and the
// selected token's attention rows. Everything fetched sits in one least-recently-used cache
// bounded in bytes (?cache_mb=N, default 64).

const SVG_NS = "http://www.w3.org/2000/svg";
const CELL = 18; // px per token column at most; narrower when many tokens are shown at once
const MIN_LABEL = 11; // px a rotated token label needs: narrower columns label every k-th token
const ROW = 18; // px per matrix row at most; deep models get thinner rows
const MATRIX_HEIGHT = 360; // px the layer rows of a deep model's heatmap share
const LEFT = 74; // room for row labels and the y axis
const TOP = 22; // room for the prompt / response labels
const LABELS = 86; // room for the rotated token labels
const LENS_LABELS = 80; // room for the rotated logit-lens predictions
const CHART_HEIGHT = 200;
const STRIP_HEIGHT = 44; // px of a canvas overview strip
const FIT_ALL = 120; // up to this many tokens every token is shown by default; beyond, a window of...
const DEFAULT_WINDOW = 100; // ...this many tokens, moved with the selection or the strip
const ZOOMS = [50, 100, 200];
const DEFAULT_CACHE_MB = 64;
const HEADER_GUESS = 65536; // first bytes read from a shared file: its header almost always fits
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const DIVERGING = [[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]]; // RdBu
const EXPERIMENT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const MEASURES = { projection: "projection onto the trait vector", cosine: "cosine (projection / residual norm)" };
const STATS = { mean: "mean over response tokens", peak: "peak (largest |score|, signed) over response tokens" };

const $ = (id) => document.getElementById(id);
const state = { exp: null, index: null, overview: null, page: "prompt", trait: null, prompt: null, point: null,
  layer: null, measure: "projection", stat: "mean", sort: null, sortDir: -1, token: null, method: null,
  deepLayer: null, zoom: null, start: 0, search: "", set: null }; // token null: the first response token
let renderId = 0;
let heatmapMarked = false;

// ---------- a bounded cache: least recently used goes first ----------

class LRU {
  constructor(budget) {
    this.budget = budget;
    this.map = new Map(); // key -> {promise, bytes}; Map order is use order (oldest first)
    this.bytes = 0;
  }

  // make() -> Promise<{value, bytes}>; the value is shared by every caller of the same key.
  get(key, make) {
    const hit = this.map.get(key);
    if (hit) {
      this.map.delete(key);
      this.map.set(key, hit);
      return hit.promise;
    }
    const entry = { bytes: 0, done: false };
    entry.promise = make().then(({ value, bytes }) => {
      entry.bytes = bytes;
      entry.done = true;
      if (this.map.get(key) === entry) {
        this.bytes += bytes;
        this.evict(key);
      }
      return value;
    }, (err) => {
      if (this.map.get(key) === entry) this.map.delete(key);
      throw err;
    });
    this.map.set(key, entry);
    return entry.promise;
  }

  put(key, value, bytes) {
    this.get(key, () => Promise.resolve({ value, bytes }));
  }

  has(key) {
    return this.map.has(key);
  }

  evict(keep) {
    for (const [key, entry] of this.map) {
      if (this.bytes <= this.budget) break;
      if (key === keep || !entry.done) continue; // in flight: not counted yet
      this.map.delete(key);
      this.bytes -= entry.bytes;
    }
  }
}

let cache = new LRU(DEFAULT_CACHE_MB * 2 ** 20);

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

function fmt3(v) { // three significant digits, as the overview stores them
  return Number.isFinite(v) ? String(Number(v.toPrecision(3))) : "n/a";
}

// A prompt's name: its number within its prompt set, prefixed by the set unless it is the default one.
function promptName(p) {
  return p && p.prompt_set && p.prompt_set !== "default" ? `${p.prompt_set}/${p.set_index}` : `${p ? p.set_index ?? p.index : "?"}`;
}

function promptsOfSet() {
  return state.index.prompts.filter((p) => !state.set || (p.prompt_set || "default") === state.set);
}

function shortText(text, max = 70) {
  const one = text.replace(/\s+/g, " ");
  return one.length > max ? one.slice(0, max - 1) + "\u2026" : one;
}

const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));

// ---------- colour scales ----------

function divergingRGB(v, limit) {
  const x = clamp(limit > 0 ? v / limit : 0, -1, 1);
  const pos = ((x + 1) / 2) * (DIVERGING.length - 1);
  const i = Math.min(Math.floor(pos), DIVERGING.length - 2);
  const f = pos - i;
  return DIVERGING[i].map((a, k) => Math.round(a + f * (DIVERGING[i + 1][k] - a)));
}

function diverging(v, limit) {
  return Number.isFinite(v) ? `rgb(${divergingRGB(v, limit).join(",")})` : "#dddddd";
}

// Attention weights (0 to 1): white to purple on an absolute scale, so tokens compare;
// the square root keeps small weights visible beside an attention sink.
function attentionRGB(v) {
  const f = Math.sqrt(clamp(v, 0, 1));
  return [255, 255, 255].map((a, k) => Math.round(a + f * ([63, 0, 125][k] - a)));
}

function attentionColour(v) {
  return `rgb(${attentionRGB(v).join(",")})`;
}

function maxAbs(rows) {
  let m = 0;
  for (const row of rows) for (const v of row.values) if (Number.isFinite(v)) m = Math.max(m, Math.abs(v));
  return m;
}

// ---------- data: JSON, byte ranges, the shared safetensors file ----------

function experimentUrl(relpath) {
  return `../experiments/${encodeURIComponent(state.exp)}/` + relpath.split("/").map(encodeURIComponent).join("/");
}

async function fetchOk(url, init) {
  const r = await fetch(url, init);
  if (!r.ok) throw new Error(`${decodeURIComponent(url)}: HTTP ${r.status}`);
  return r;
}

// A JSON file through the cache; transform(parsed) is what is kept, weight its bytes.
function loadJSON(relpath, transform = (x) => x, weight = (value, n) => n) {
  const url = experimentUrl(relpath);
  return cache.get("json " + url, async () => {
    const buf = await (await fetchOk(url)).arrayBuffer();
    const value = transform(JSON.parse(new TextDecoder().decode(buf)));
    return { value, bytes: weight(value, buf.byteLength) };
  });
}

function load(relpath, transform, weight) {
  if (!relpath) return Promise.resolve(null);
  return loadJSON(relpath, transform, weight).catch((error) => ({ error }));
}

const noRanges = new Set(); // URLs whose server ignored Range and sent the whole file

function wholeFile(url) {
  return cache.get("whole " + url, async () => {
    const buf = await (await fetchOk(url)).arrayBuffer();
    return { value: buf, bytes: buf.byteLength };
  });
}

// Bytes [start, end) of a file (fewer where the file ends first), by an HTTP Range request.
// A server that ignores Range sends the whole file: it is kept (in the cache) and read from.
async function readRange(url, start, end) {
  if (end <= start) return new ArrayBuffer(0);
  if (noRanges.has(url)) return (await wholeFile(url)).slice(start, end);
  const r = await fetchOk(url, { headers: { Range: `bytes=${start}-${end - 1}` } });
  const buf = await r.arrayBuffer();
  if (r.status === 206) {
    const m = /bytes (\d+)-(\d+)/.exec(r.headers.get("Content-Range") || "");
    const first = m ? Number(m[1]) : start;
    if (first === start && buf.byteLength <= end - start) return buf;
    if (first > start) throw new Error(`${decodeURIComponent(url)}: asked for bytes from ${start}, got from ${first}`);
    return buf.slice(start - first, end - first);
  }
  noRanges.add(url);
  cache.put("whole " + url, buf, buf.byteLength);
  return buf.slice(start, end);
}

const DTYPES = { F64: Float64Array, F32: Float32Array, I32: Int32Array, U32: Uint32Array, I16: Int16Array,
  U16: Uint16Array, I8: Int8Array, U8: Uint8Array };

function parseMeta(value) {
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

// A shared per-prompt file: its safetensors header (8-byte little-endian length, then JSON).
function openShared(relpath) {
  const url = experimentUrl(relpath);
  return cache.get("header " + url, async () => {
    let buf = await readRange(url, 0, HEADER_GUESS);
    if (buf.byteLength < 8) throw new Error(`${relpath}: not a safetensors file`);
    const view = new DataView(buf);
    const n = view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32;
    let bytes = new Uint8Array(buf, 8, Math.min(n, buf.byteLength - 8));
    if (8 + n > buf.byteLength) bytes = new Uint8Array(await readRange(url, 8, 8 + n));
    const header = JSON.parse(new TextDecoder().decode(bytes));
    const meta = Object.fromEntries(Object.entries(header.__metadata__ || {}).map(([k, v]) => [k, parseMeta(v)]));
    delete header.__metadata__;
    // The first bytes read stay with the header: a small file's tensors need no more requests.
    const shared = { url, relpath, dataStart: 8 + n, tensors: header, meta, head: buf,
      nPrompt: Number(meta.n_prompt), nLayers: Number(meta.n_layers), lensTokens: meta.logit_lens_tokens || null };
    return { value: shared, bytes: n + buf.byteLength };
  });
}

function readShared(shared, start, end) {
  if (end <= shared.head.byteLength) return Promise.resolve(shared.head.slice(start, end));
  return readRange(shared.url, start, end);
}

function tensor(shared, name) {
  const info = shared && shared.tensors[name];
  if (!info) return Promise.resolve(null);
  return cache.get(`tensor ${shared.url} ${name}`, async () => {
    const Type = DTYPES[info.dtype];
    if (!Type) throw new Error(`${shared.relpath}: ${name} has dtype ${info.dtype}, which the viewer does not read`);
    const [a, b] = info.data_offsets;
    const buf = await readShared(shared, shared.dataStart + a, shared.dataStart + b);
    return { value: { data: new Type(buf), shape: info.shape }, bytes: buf.byteLength };
  });
}

// Token t's attention rows at every layer, [L][t + 1] weights: one byte range of the packed
// lower triangle (token t's block of L * (t + 1) entries starts at entry L * t * (t + 1) / 2).
function attentionRows(shared, t) {
  const info = shared && shared.tensors.attention;
  if (!info) return Promise.resolve(null);
  return cache.get(`attention ${shared.url} ${t}`, async () => {
    const Type = DTYPES[info.dtype];
    const L = shared.nLayers;
    const start = shared.dataStart + info.data_offsets[0] + ((L * t * (t + 1)) / 2) * Type.BYTES_PER_ELEMENT;
    const buf = await readShared(shared, start, start + L * (t + 1) * Type.BYTES_PER_ELEMENT);
    const codes = new Type(buf);
    const scale = info.dtype === "U16" ? 65535 : 1; // uint16 fixed point: weight = value / 65535
    const rows = [];
    for (let l = 0; l < L; l++) rows.push(Array.from(codes.subarray(l * (t + 1), (l + 1) * (t + 1)), (c) => c / scale));
    return { value: rows, bytes: buf.byteLength * 4 };
  });
}

function files(trait, prompt) {
  return ((state.index.files || {})[trait] || {})[String(prompt)] || {};
}

function promptEntry(i) {
  return state.index.prompts.find((p) => p.index === i);
}

// The tokens of one prompt (prompt then response), from its response file.
function tokensOf(resp) {
  return { tokens: resp.prompt.tokens.concat(resp.response.tokens), nPrompt: resp.prompt.n_tokens };
}

// A trait's projections for one prompt: proj[(t * L + l) * P + p], float64 (exactly the JSON's numbers).
function captureOf(rec) {
  const rows = rec.projections.prompt.concat(rec.projections.response);
  const L = rec.metadata.n_layers;
  const P = rows.length ? rows[0][0].length : 3;
  const proj = new Float64Array(rows.length * L * P);
  rows.forEach((tok, t) => tok.forEach((layer, l) => layer.forEach((v, p) => { proj[(t * L + l) * P + p] = v; })));
  return { trait: rec.trait, T: rows.length, L, P, nPrompt: rec.projections.prompt.length, proj };
}

// What one prompt's views share: tokens, the shared file's norms and logit lens.
async function promptBase(i) {
  const entry = promptEntry(i);
  const [toks, shared] = await Promise.all([
    load(entry.response, tokensOf, (v, n) => n),
    entry.shared ? openShared(entry.shared).catch((error) => ({ error })) : Promise.resolve(null),
  ]);
  const base = { toks, shared, norms: null, lens: null };
  if (shared && !shared.error) {
    try {
      const [norms, ids, probs] = await Promise.all(["residual_norms", "logit_lens_ids", "logit_lens_probs"]
        .map((name) => tensor(shared, name)));
      base.norms = norms;
      if (ids && probs && shared.lensTokens) {
        base.lens = { ids: ids.data, probs: probs.data, L: ids.shape[1], k: ids.shape[2], tokens: shared.lensTokens };
      }
    } catch (error) {
      base.shared = { error };
    }
  }
  return base;
}

// ---------- scores: projection or cosine ----------

function scoreFn(cap, norms) {
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

function measureName() {
  return state.measure === "cosine" ? "cosine" : "projection";
}

function lensTop(lens, t, l) {
  if (!lens) return [];
  const out = [];
  for (let j = 0; j < lens.k; j++) {
    const i = (t * lens.L + l) * lens.k + j;
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

// ---------- the token window: what token-aligned views show ----------

function zoomSize(T) {
  const z = state.zoom === null ? (T <= FIT_ALL ? "all" : DEFAULT_WINDOW) : state.zoom;
  return z === "all" ? T : Math.min(T, z);
}

// {start, end, cw, every}: tokens start..end-1 at cw px each, every k-th one labelled.
// The window always holds the selected token: it moves when the selection leaves it.
function tokenWindow(T) {
  const size = Math.max(1, zoomSize(T));
  let start = clamp(state.start, 0, Math.max(0, T - size));
  const t = state.token;
  if (t !== null && (t < start || t >= start + size)) start = clamp(t - Math.floor(size / 2), 0, Math.max(0, T - size));
  state.start = start;
  const avail = Math.max(300, ($("heatmap").clientWidth || 1200) - LEFT - 16);
  const cw = Math.max(2, Math.min(CELL, Math.floor(avail / size)));
  return { start, end: Math.min(T, start + size), size, cw, T, every: cw >= MIN_LABEL ? 1 : Math.ceil(MIN_LABEL / cw),
    plotWidth: avail };
}

function searchMatches(tokens) {
  const q = state.search.toLowerCase();
  if (!q) return [];
  const hits = [];
  tokens.forEach((token, t) => {
    const s = String(token).toLowerCase();
    if (s.includes(q) || showToken(s).includes(q)) hits.push(t);
  });
  return hits;
}

// ---------- drawing: token axis, matrices, charts ----------

function segment(t, nPrompt) {
  return t < nPrompt ? "prompt" : "response";
}

// Token labels under a plot, the prompt/response divider, and the selected column.
// columns: [{index, token}] of the window; win: its geometry.
function tokenAxis(svg, columns, nPrompt, plotHeight, selected, win, matches) {
  const bottom = TOP + plotHeight;
  const cw = win.cw;
  const first = columns.findIndex((c) => c.index >= nPrompt);
  if (columns.length && columns[0].index < nPrompt) {
    svg.appendChild(svgEl("text", { x: LEFT, y: 14, class: "segment-label" }, "prompt"));
  }
  if (first >= 0) {
    const x = LEFT + first * cw;
    if (first > 0) svg.appendChild(svgEl("line", { x1: x, x2: x, y1: TOP - 4, y2: bottom + 4, class: "divider" }));
    svg.appendChild(svgEl("text", { x: x + 3, y: 14, class: "segment-label" }, "response"));
  }
  const hit = new Set(matches || []);
  columns.forEach((col, c) => {
    if (col.index % win.every !== 0 && col.index !== selected) return;
    const x = LEFT + c * cw + cw / 2;
    const y = bottom + 6;
    const label = svgEl("text", {
      x, y, dy: "0.35em", transform: `rotate(-90 ${x} ${y})`, "text-anchor": "end",
      class: "token-label" + (col.index === selected ? " selected" : "") + (hit.has(col.index) ? " match" : ""),
      "data-token": col.index,
    }, shortToken(col.token));
    svg.appendChild(titled(label, `#${col.index} ${JSON.stringify(col.token)} (${segment(col.index, nPrompt)})`));
  });
  const c = columns.findIndex((col) => col.index === selected);
  if (c >= 0) {
    svg.appendChild(svgEl("rect", { x: LEFT + c * cw, y: TOP - 2, width: cw, height: plotHeight + 4,
      class: "selection" }));
  }
}

function clickable(svg, onSelect) {
  svg.addEventListener("click", (event) => {
    const target = event.target.closest("[data-token]");
    if (target) onSelect(Number(target.dataset.token), target.dataset.row);
  });
}

function rowHeight(n) {
  return n <= 20 ? ROW : Math.max(6, Math.min(ROW, Math.floor(MATRIX_HEIGHT / n)));
}

// rows: [{label, values}] drawn top to bottom; columns: [{index, token}], one per value (the window).
// band: optional extra {height, draw(svg, y)} under the token labels (the logit lens).
function drawMatrix(container, { rows, columns, nPrompt, colour, selected, onSelect, describe, win, matches, band }) {
  const rh = rowHeight(rows.length);
  const labelEvery = rh >= 12 ? 1 : Math.ceil(12 / rh);
  const plotHeight = rows.length * rh;
  const cw = win.cw;
  const svg = svgEl("svg", { width: LEFT + columns.length * cw + 12,
    height: TOP + plotHeight + LABELS + (band ? band.height : 0), class: "matrix" });
  rows.forEach((row, r) => {
    if (r % labelEvery === 0 || rows.length - 1 - r === 0) {
      svg.appendChild(svgEl("text", { x: LEFT - 6, y: TOP + r * rh + rh / 2, dy: "0.35em", "text-anchor": "end",
        class: "row-label" }, row.label));
    }
    row.values.forEach((v, c) => {
      const rect = svgEl("rect", { x: LEFT + c * cw, y: TOP + r * rh, width: cw, height: rh,
        fill: colour(v), class: "cell", "data-row": r, "data-token": columns[c].index, "data-value": v,
        ...(row.layer === undefined ? {} : { "data-layer": row.layer }) });
      svg.appendChild(describe ? titled(rect, describe(row, columns[c], v)) : rect);
    });
  });
  tokenAxis(svg, columns, nPrompt, plotHeight, selected, win, matches);
  if (band) band.draw(svg, TOP + plotHeight + LABELS);
  clickable(svg, onSelect);
  container.replaceChildren(svg);
  return svg;
}

function niceStep(span) {
  const raw = span / 4;
  const mag = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
}

// A token-aligned chart over the window: lines (series) and side-by-side bars per token;
// decorate(geometry) returns extra SVG nodes (dynamics markers) drawn under the lines.
// Values cover every token (the y scale stays put while the window moves).
function drawChart(container, { tokens, nPrompt, series, bars = [], selected, onSelect, decorate, win, matches }) {
  let lo = 0;
  let hi = 0;
  for (const s of series.concat(bars)) {
    for (const v of s.values) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  }
  if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
  const pad = (hi - lo) * 0.05;
  lo -= pad; hi += pad;
  const { start, end, cw } = win;
  const g = {
    x: (t) => LEFT + (t - start) * cw + cw / 2,
    y: (v) => TOP + ((hi - v) / (hi - lo)) * CHART_HEIGHT,
    top: TOP, bottom: TOP + CHART_HEIGHT, cw, start, end,
  };
  const n = end - start;
  const svg = svgEl("svg", { width: LEFT + n * cw + 12, height: TOP + CHART_HEIGHT + LABELS, class: "chart" });
  const step = niceStep(hi - lo);
  for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) {
    svg.appendChild(svgEl("line", { x1: LEFT, x2: LEFT + n * cw, y1: g.y(v), y2: g.y(v),
      class: Math.abs(v) < step / 2 ? "zero-line" : "grid-line" }));
    svg.appendChild(svgEl("text", { x: LEFT - 6, y: g.y(v), dy: "0.35em", "text-anchor": "end", class: "tick" },
      Number(v.toFixed(6)).toString()));
  }
  if (decorate) decorate(g).forEach((node) => svg.appendChild(node));
  const barWidth = Math.max(1, cw - 4) / Math.max(1, bars.length);
  bars.forEach((bar, b) => {
    for (let t = start; t < end; t++) {
      const v = bar.values[t];
      if (!Number.isFinite(v)) continue;
      const rect = svgEl("rect", { x: LEFT + (t - start) * cw + Math.min(2, cw / 4) + b * barWidth,
        y: Math.min(g.y(v), g.y(0)), width: barWidth, height: Math.abs(g.y(v) - g.y(0)), fill: bar.colour,
        class: "bar " + bar.cls, "data-token": t, "data-value": v });
      svg.appendChild(titled(rect, `${bar.name}, token #${t} ${JSON.stringify(tokens[t])}: ${fmt(v)}`));
    }
  });
  const r = cw >= 8 ? 2.6 : 1.6;
  for (const s of series) {
    let d = "";
    for (let t = start; t < end; t++) {
      const v = s.values[t];
      if (Number.isFinite(v)) d += `${d && Number.isFinite(s.values[t - 1]) ? "L" : "M"}${g.x(t)},${g.y(v)}`;
    }
    svg.appendChild(svgEl("path", { d, stroke: s.colour, class: "line " + s.cls, "data-name": s.name }));
    for (let t = start; t < end; t++) {
      const v = s.values[t];
      if (!Number.isFinite(v)) continue;
      const dot = svgEl("circle", { cx: g.x(t), cy: g.y(v), r, fill: s.colour, class: "point", "data-token": t,
        "data-name": s.name, "data-value": v });
      svg.appendChild(titled(dot, `${s.name}, token #${t} ${JSON.stringify(tokens[t])}: ${fmt(v)}`));
    }
  }
  const columns = [];
  for (let t = start; t < end; t++) columns.push({ index: t, token: tokens[t] });
  tokenAxis(svg, columns, nPrompt, CHART_HEIGHT, selected, win, matches);
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
  const svg = svgEl("svg", { width: width + 620, height: 34 });
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

// A canvas overview of a whole [rows x T] matrix (every token, one pixel row band per layer),
// the window outlined, the selected token and search matches marked. A click or a drag selects
// the token under the pointer (the window follows).
function drawStrip(canvas, { T, nRows, value, rgb, win, selected, nPrompt, matches = [], keys = T }) {
  const width = win.plotWidth;
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(STRIP_HEIGHT * ratio);
  canvas.style.width = `${width}px`; // CSSOM, allowed under the page's style-src 'self'
  canvas.style.height = `${STRIP_HEIGHT}px`;
  canvas.style.marginLeft = `${LEFT}px`;
  const image = new ImageData(Math.max(1, keys), nRows);
  for (let r = 0; r < nRows; r++) {
    for (let t = 0; t < keys; t++) {
      const c = rgb(value(r, t));
      const i = (r * keys + t) * 4;
      image.data[i] = c[0]; image.data[i + 1] = c[1]; image.data[i + 2] = c[2]; image.data[i + 3] = 255;
    }
  }
  const off = document.createElement("canvas");
  off.width = image.width;
  off.height = image.height;
  off.getContext("2d").putImageData(image, 0, 0);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, STRIP_HEIGHT);
  ctx.imageSmoothingEnabled = false;
  const x = (t) => (t / T) * width;
  ctx.drawImage(off, 0, 0, x(keys), STRIP_HEIGHT);
  ctx.fillStyle = "#ff8c00";
  for (const t of matches) ctx.fillRect(x(t), 0, Math.max(1.5, width / T), 4);
  if (nPrompt > 0 && nPrompt < T) { // prompt | response: dashed
    ctx.strokeStyle = "#333";
    ctx.lineWidth = 1;
    ctx.setLineDash([3, 3]);
    ctx.beginPath();
    ctx.moveTo(x(nPrompt), 0);
    ctx.lineTo(x(nPrompt), STRIP_HEIGHT);
    ctx.stroke();
    ctx.setLineDash([]);
  }
  ctx.strokeStyle = "#000"; // the window drawn below
  ctx.lineWidth = 2;
  ctx.strokeRect(x(win.start) + 1, 1, Math.max(3, x(win.end) - x(win.start) - 2), STRIP_HEIGHT - 2);
  if (selected !== null) { // the selected token: a notch above and below
    ctx.fillStyle = "#000";
    const w = Math.max(3, width / T);
    ctx.fillRect(x(selected + 0.5) - w / 2, 0, w, 7);
    ctx.fillRect(x(selected + 0.5) - w / 2, STRIP_HEIGHT - 7, w, 7);
  }
  canvas.dataset.tokens = T;
  canvas.dataset.start = win.start;
  canvas.dataset.end = win.end;
}

function stripToken(canvas, event) {
  const box = canvas.getBoundingClientRect();
  const T = Number(canvas.dataset.tokens);
  return clamp(Math.floor(((event.clientX - box.left) / box.width) * T), 0, T - 1);
}

function stripInteractions(canvas) {
  let dragging = false;
  let pending = null;
  const go = (event) => {
    pending = stripToken(canvas, event);
    requestAnimationFrame(() => {
      if (pending !== null && pending !== state.token) select(pending);
      pending = null;
    });
  };
  canvas.addEventListener("pointerdown", (event) => {
    dragging = true;
    canvas.setPointerCapture(event.pointerId);
    go(event);
  });
  canvas.addEventListener("pointermove", (event) => { if (dragging) go(event); });
  canvas.addEventListener("pointerup", () => { dragging = false; });
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
  const inside = (t) => t >= g.start && t < g.end;
  for (const t of persistentTokens(scores, dyn).filter(inside)) {
    nodes.push(titled(svgEl("rect", { x: g.x(t) - g.cw / 2, y: g.top, width: g.cw, height: g.bottom - g.top,
      fill: colour, class: "persistence-marker", "data-token": t }), `${label}: persists beyond the threshold`));
  }
  if (dyn.commitment_point && inside(dyn.commitment_point.index)) {
    const x = g.x(dyn.commitment_point.index);
    nodes.push(titled(svgEl("line", { x1: x, x2: x, y1: g.top, y2: g.bottom, stroke: colour,
      class: "commitment-marker", "data-token": dyn.commitment_point.index }),
    `${label}: commitment point at token #${dyn.commitment_point.index}`));
  }
  if (dyn.peak && inside(dyn.peak.index)) {
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

// ---------- prompt views ----------

function traitColour(trait) {
  return PALETTE[state.index.traits.findIndex((t) => t.name === trait) % PALETTE.length];
}

function pointIndex() {
  return state.index.sublayers.indexOf(state.point);
}

function windowColumns(tokens, win) {
  const columns = [];
  for (let t = win.start; t < win.end; t++) columns.push({ index: t, token: tokens[t] });
  return columns;
}

function renderTokenStrip(base, matches) {
  const { tokens, nPrompt } = base.toks;
  const strip = $("token-strip");
  const hit = new Set(matches);
  strip.replaceChildren(...tokens.map((token, t) => {
    const span = el("span", { class: `token ${segment(t, nPrompt)}${t === state.token ? " selected" : ""}`
      + (hit.has(t) ? " match" : ""), "data-token": t, title: `#${t} ${JSON.stringify(token)}` }, showToken(token));
    return span;
  }));
  const chosen = strip.querySelector(".token.selected");
  if (chosen && strip.scrollHeight > strip.clientHeight) { // keep the selection in the strip's own scroll box
    const top = chosen.offsetTop - strip.offsetTop;
    const outside = top < strip.scrollTop || top > strip.scrollTop + strip.clientHeight - 20;
    if (outside) strip.scrollTop = top - strip.clientHeight / 2;
  }
  const count = $("search-count");
  if (!state.search) count.textContent = "";
  else if (!matches.length) count.textContent = "no token matches";
  else {
    const at = matches.indexOf(state.token);
    count.textContent = at >= 0 ? `match ${at + 1} of ${matches.length}` : `${matches.length} matching tokens`;
  }
}

function renderWindowControls(win) {
  const T = win.T;
  const zoom = $("zoom-select");
  const current = state.zoom === null ? (T <= FIT_ALL ? "all" : DEFAULT_WINDOW) : state.zoom;
  const options = ZOOMS.filter((z) => z < T).map((z) => [z, `${z} tokens`]).concat([["all", `all ${T} tokens`]]);
  fillSelect(zoom, options, options.some(([v]) => String(v) === String(current)) ? current : "all");
  const part = win.end - win.start < T;
  $("window-info").textContent = part ? `tokens ${win.start}\u2013${win.end - 1} of ${T}` : `${T} tokens`;
  $("window-prev").disabled = win.start <= 0;
  $("window-next").disabled = win.end >= T;
  document.body.dataset.windowed = win.end - win.start < T ? "yes" : "no";
}

function renderHeatmap(base, cap, win, matches) {
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
  let limit = 0;
  for (let l = cap.L - 1; l >= 0; l--) {
    const values = [];
    for (let t = win.start; t < win.end; t++) values.push(score(t, l, p));
    rows.push({ label: `layer ${l}`, layer: l, values });
    for (let t = 0; t < cap.T; t++) limit = Math.max(limit, Math.abs(score(t, l, p))); // one scale for every window
  }
  const lens = base.lens;
  const band = lens ? {
    height: LENS_LABELS,
    draw: (svg, y0) => {
      const l = state.layer;
      const head = svgEl("text", { x: LEFT - 6, y: y0 + 12, "text-anchor": "end", class: "row-label lens-row" },
        `L${l} next:`);
      svg.appendChild(titled(head, `The top-1 next-token prediction of layer ${l}'s residual stream (logit lens)`));
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
  } : null;
  const svg = drawMatrix(view, {
    rows, columns: windowColumns(tokens, win), nPrompt, colour: (v) => diverging(v, limit), selected: state.token,
    onSelect: (t, r) => select(t, rows[r] ? rows[r].layer : undefined), win, matches, band,
    describe: (row, col, v) => `${row.label}, token #${col.index} ${JSON.stringify(col.token)}: `
      + `${measureName()} ${fmt(v)}` + (lens ? `\n${lensText(lens, col.index, row.layer)}` : ""),
  });
  svg.addEventListener("mouseover", (event) => {
    const cell = event.target.closest(".cell");
    if (!cell) return;
    const t = Number(cell.dataset.token);
    const l = Number(cell.dataset.layer);
    const proj = cap.proj[(t * cap.L + l) * cap.P + p];
    const norm = base.norms ? base.norms.data[(t * cap.L + l) * cap.P + p] : NaN;
    $("heatmap-hover").textContent = `layer ${l}, token #${t} \u201c${showToken(tokens[t])}\u201d: `
      + `projection ${fmt(proj)}`
      + (Number.isFinite(norm) ? `, norm ${fmt(norm)}, cosine ${fmt(norm > 0 ? proj / norm : 0)}` : "")
      + (lens ? ` \u2014 ${lensText(lens, t, l)}` : "");
  });
  Object.assign(view.dataset, { trait: state.trait, prompt: state.prompt, point: state.point, measure: state.measure,
    start: win.start, end: win.end, lens: lens ? "yes" : "no" });
  colourBar($("heatmap-legend"), limit, MEASURES[state.measure]);
  $("heatmap-title").textContent = `${state.trait}, prompt ${state.prompt}, ${state.point}, ${measureName()}`;
  drawStrip($("heatmap-strip"), { T: cap.T, nRows: cap.L, value: (r, t) => score(t, cap.L - 1 - r, p),
    rgb: (v) => divergingRGB(v, limit), win, selected: state.token, nPrompt, matches });
  if (!heatmapMarked) {
    heatmapMarked = true;
    performance.mark("traitflow-heatmap-drawn");
  }
}

function renderAttention(base, rows, win) {
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
    onSelect: (k) => select(k),
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

function renderTrajectories(base, caps, dyns, win, matches) {
  const p = pointIndex();
  const traits = state.index.traits.map((t) => t.name);
  const present = traits.filter((_, k) => caps[k] && !caps[k].error);
  const view = $("trajectories");
  if (!present.length) return note(view, "No all-layers JSON for this prompt.");
  if (state.measure === "cosine" && !base.norms) {
    return note(view, "No residual norms for this prompt: cosine needs them.");
  }
  const series = present.map((name) => {
    const cap = caps[traits.indexOf(name)];
    const score = scoreFn(cap, base.norms);
    return { name, colour: traitColour(name), cls: "trait-line",
      values: Array.from({ length: cap.T }, (_, t) => score(t, state.layer, p)) };
  });
  drawChart(view, {
    tokens: base.toks.tokens, nPrompt: base.toks.nPrompt, series, selected: state.token, onSelect: (t) => select(t),
    win, matches,
    decorate: (g) => (state.measure !== "projection" ? [] : present.flatMap((name, k) => {
      const dyn = dyns[traits.indexOf(name)];
      if (!dyn || dyn.error || dyn.layer !== state.layer || dyn.point !== state.point) return [];
      const method = dynamicsMethod(dyn);
      return method ? markers(g, series[k].values, dyn.dynamics[method], series[k].colour, `${name} (${method})`) : [];
    })),
  });
  Object.assign(view.dataset, { layer: state.layer, point: state.point, traits: present.length,
    measure: state.measure });
  const missing = traits.filter((name) => !present.includes(name));
  $("trajectory-title").textContent = `prompt ${state.prompt}, layer ${state.layer}, ${state.point}, ${measureName()}`
    + (missing.length ? ` (no capture for: ${missing.join(", ")})` : "");
}

function renderDynamics(dyn, win, matches) {
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
    tokens: dyn.tokens, nPrompt: dyn.n_prompt, selected: state.token, onSelect: (t) => select(t), win, matches,
    series: [{ name: `${state.trait} score (${method})`, values: scores, colour, cls: "dynamics-line" }],
    bars: [{ name: "velocity (change from the previous token)", values: velocity, colour: "#bbbbbb", cls: "velocity" }],
    decorate: (g) => markers(g, scores, d, colour, method),
  });
  view.dataset.method = method;
  const tok = (i) => `#${i} \u201c${showToken(dyn.tokens[i])}\u201d`;
  const lines = [
    d.peak ? `Peak: ${fmt(d.peak.score)} at token ${tok(d.peak.index)}` : "Peak: none",
    d.commitment_point ? `Commitment point: token ${tok(d.commitment_point.index)}`
      : "Commitment point: none (never settles)",
    `Persistence: ${d.persistence.count} tokens after the peak beyond ${fmt(d.persistence.threshold)} `
      + `(longest run ${d.persistence.longest_run})`,
    `Peak velocity: ${fmt(d.peak_velocity)}; mean |velocity|: ${fmt(d.mean_abs_velocity)}`,
  ];
  summary.replaceChildren(...lines.map((line) => el("p", {}, line)));
  $("dynamics-title").textContent = `${state.trait}, layer ${dyn.layer}, ${dyn.point}`
    + (dyn.span ? `, metrics over the ${dyn.span} tokens` : "");
}

function renderDeepDive(rec, layers, base, win, matches) {
  const parts = ["decomposition", "heads", "neurons"].map($);
  $("deepdive-title").textContent = rec && !rec.error
    ? `${state.trait}, prompt ${state.prompt}, layer ${rec.layer}` : "";
  if (!rec || rec.error) {
    const text = rec ? `Could not load: ${rec.error.message}` : (layers.length
      ? "Pick a layer." : "No single-layer capture for this trait and prompt (the single-layer rule writes them).");
    parts.forEach((p) => note(p, text));
    return;
  }
  const { tokens, nPrompt } = base.toks;
  const dec = rec.decomposition || {};
  const onSelect = (t) => select(t);
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

// ---------- the overview: traits x prompts, one number per cell ----------

function overviewValue(ov, a, b, layer, p) {
  const i = ((a * ov.prompts.length + b) * ov.n_layers + layer) * ov.sublayers.length + p;
  const v = ov.values[state.measure][state.stat][i];
  return v === null || v === undefined ? NaN : v;
}

function renderOverview(ov) {
  const ix = state.index;
  const view = $("overview");
  const p = ov.sublayers.indexOf(state.point);
  const layer = Math.min(state.layer, ov.n_layers - 1);
  const texts = new Map(ix.prompts.map((q) => [q.index, q.text]));
  const names = new Map(ix.prompts.map((q) => [q.index, promptName(q)]));
  const inSet = new Set(promptsOfSet().map((q) => q.index));
  const traitNames = ov.traits;
  const values = traitNames.map((_, a) => ov.prompts.map((_, b) => overviewValue(ov, a, b, layer, p)));
  const limit = values.flat().reduce((m, v) => (Number.isFinite(v) ? Math.max(m, Math.abs(v)) : m), 0);
  const order = ov.prompts.map((_, b) => b).filter((b) => inSet.has(ov.prompts[b]));
  const sortBy = traitNames.indexOf(state.sort);
  if (sortBy >= 0) {
    order.sort((x, y) => {
      const vx = values[sortBy][x];
      const vy = values[sortBy][y];
      if (!Number.isFinite(vx) || !Number.isFinite(vy)) { // cells without a value go last
        return Number.isFinite(vx) ? -1 : (Number.isFinite(vy) ? 1 : x - y);
      }
      return state.sortDir * (vx - vy) || x - y;
    });
  } else if (state.sort === "prompt" && state.sortDir < 0) {
    order.reverse();
  }
  const table = el("table", { id: "overview-grid", class: "overview-grid" });
  const head = el("tr");
  const arrow = (key) => (state.sort === key ? (state.sortDir < 0 ? " \u25bc" : " \u25b2") : "");
  head.appendChild(el("th", { class: "sortable", "data-sort": "prompt", scope: "col",
    title: "Order by prompt number (click again to reverse)" }, "prompt" + arrow("prompt")));
  traitNames.forEach((name) => {
    head.appendChild(el("th", { class: "sortable trait-head", "data-sort": name, scope: "col",
      title: `Sort prompts by ${name} (click again to reverse)` }, name + arrow(name)));
  });
  const thead = el("thead");
  thead.appendChild(head);
  const tbody = el("tbody");
  for (const b of order) {
    const index = ov.prompts[b];
    const text = texts.get(index) ?? "";
    const tr = el("tr", { "data-prompt": index });
    tr.appendChild(el("th", { class: "prompt-head", scope: "row", "data-prompt": index, title: text },
      `#${names.get(index)} ${shortText(text, 48)}`));
    traitNames.forEach((name, a) => {
      const v = values[a][b];
      const td = el("td", { class: "ov-cell", "data-trait": name, "data-prompt": index, "data-value": v,
        title: `${name} on prompt #${names.get(index)}: ${state.stat} ${measureName()} at layer ${layer}, ${state.point} `
          + `= ${fmt3(v)}\n\n${text}` },
      fmt3(v));
      td.style.backgroundColor = diverging(v, limit); // CSSOM: allowed under style-src 'self'
      if (Number.isFinite(v) && limit > 0 && Math.abs(v) / limit > 0.6) td.classList.add("dark");
      tr.appendChild(td);
    });
    tbody.appendChild(tr);
  }
  table.append(thead, tbody);
  table.addEventListener("click", (event) => {
    const sorter = event.target.closest("th.sortable");
    if (sorter) {
      const key = sorter.dataset.sort;
      if (state.sort === key) state.sortDir = -state.sortDir;
      else [state.sort, state.sortDir] = [key, key === "prompt" ? 1 : -1]; // a trait: largest first
      return update();
    }
    const cell = event.target.closest("td.ov-cell, th.prompt-head");
    if (cell) openPrompt(Number(cell.dataset.prompt), cell.dataset.trait || state.trait);
  });
  table.addEventListener("mouseover", (event) => {
    const cell = event.target.closest("[data-prompt]");
    if (!cell) return;
    const index = Number(cell.dataset.prompt);
    const trait = cell.dataset.trait;
    $("overview-hover").textContent = (trait ? `${trait}: ${fmt3(Number(cell.dataset.value))} \u2014 ` : "")
      + `prompt #${names.get(index)}: ${texts.get(index) ?? ""}`;
  });
  view.replaceChildren(table);
  Object.assign(view.dataset, { layer, point: state.point, stat: state.stat, measure: state.measure,
    sort: state.sort || "", dir: state.sortDir });
  colourBar($("overview-legend"), limit, `${STATS[state.stat]}, ${MEASURES[state.measure]}`);
  $("overview-title").textContent = `${traitNames.length} traits \u00d7 ${order.length} prompts, `
    + `${state.stat} ${measureName()} at layer ${layer}, ${state.point}`;
}

function openPrompt(prompt, trait) {
  state.page = "prompt";
  state.prompt = prompt;
  if (trait && state.index.traits.some((t) => t.name === trait)) state.trait = trait;
  state.token = null;
  state.start = 0;
  syncUrl(true);
  update();
}

function openOverview() {
  state.page = "overview";
  syncUrl(true);
  update();
}

// ---------- controls and state ----------

// Traits grouped by category (CATEGORY/TRAIT names), ungrouped traits first.
function fillTraits(select, traits, value) {
  const groups = new Map();
  traits.forEach((t) => {
    const key = t.category || "";
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(el("option", { value: t.name },
      `${t.category ? t.name.slice(t.category.length + 1) : t.name} (${t.method}, layer ${t.vector_layer})`));
  });
  if (select.options.length !== traits.length) {
    const sorted = [...groups].sort(([a], [b]) => (a > b) - (a < b));
    select.replaceChildren(...sorted.flatMap(([category, options]) => {
      if (!category) return options;
      const group = el("optgroup", { label: category });
      group.append(...options);
      return [group];
    }));
  }
  select.value = String(value);
}

function fillSelect(select, options, value) {
  const same = select.options.length === options.length
    && options.every(([v, text], i) => select.options[i].value === String(v) && select.options[i].text === text);
  if (!same) select.replaceChildren(...options.map(([v, text]) => el("option", { value: v }, text)));
  select.value = String(value);
}

function syncUrl(push = false) {
  const params = new URLSearchParams({ exp: state.exp });
  if (state.page === "prompt") {
    params.set("prompt", state.prompt);
    params.set("trait", state.trait);
  }
  if (state.set && state.set !== "default") params.set("set", state.set);
  params.set("point", state.point);
  params.set("layer", state.layer);
  if (state.measure !== "projection") params.set("measure", state.measure);
  if (state.page === "overview") {
    params.set("stat", state.stat);
    if (state.sort) params.set("sort", `${state.sort}:${state.sortDir > 0 ? "asc" : "desc"}`);
  } else {
    if (state.token !== null) params.set("token", state.token);
    if (state.zoom !== null) params.set("zoom", state.zoom);
  }
  const cacheMb = new URLSearchParams(location.search).get("cache_mb");
  if (cacheMb) params.set("cache_mb", cacheMb);
  const url = "?" + params.toString();
  if (push && url !== location.search) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

function select(token, layer) {
  state.token = token;
  if (layer !== undefined) {
    state.layer = layer;
    $("layer-select").value = String(layer);
  }
  update();
}

let currentTokens = []; // the open prompt's tokens, for keys and search
let currentWindow = null;

function moveToken(delta) {
  const T = currentTokens.length;
  if (!T) return;
  select(clamp((state.token || 0) + delta, 0, T - 1));
}

function jumpToMatch(step) {
  const matches = searchMatches(currentTokens);
  if (!matches.length) return;
  const t = state.token === null ? -1 : state.token;
  const next = step > 0 ? (matches.find((m) => m > t) ?? matches[0])
    : ([...matches].reverse().find((m) => m < t) ?? matches[matches.length - 1]);
  select(next);
}

function setupControls() {
  const ix = state.index;
  fillTraits($("trait-select"), ix.traits, state.trait);
  fillSelect($("set-select"), (ix.prompt_sets || ["default"]).map((s) => [s, s]), state.set);
  $("set-select").closest("label").hidden = (ix.prompt_sets || []).length < 2;
  fillSelect($("prompt-select"), promptsOfSet().map((p) => [p.index, `${promptName(p)}: ${shortText(p.text)}`]),
    state.prompt);
  fillSelect($("point-select"), ix.sublayers.map((s) => [s, s]), state.point);
  fillSelect($("layer-select"), [...Array(ix.n_layers).keys()].map((l) => [l, `layer ${l}`]), state.layer);
  fillSelect($("measure-select"), Object.keys(MEASURES).map((m) => [m, m]), state.measure);
  fillSelect($("stat-select"), Object.keys(STATS).map((s) => [s, s]), state.stat);
  const on = (id, apply) => $(id).addEventListener("change", (e) => { apply(e.target.value); update(); });
  on("trait-select", (v) => { state.trait = v; });
  on("set-select", (v) => {
    state.set = v;
    const first = promptsOfSet()[0];
    if (first && !promptsOfSet().some((p) => p.index === state.prompt)) [state.prompt, state.token] = [first.index, null];
    fillSelect($("prompt-select"), promptsOfSet().map((p) => [p.index, `${promptName(p)}: ${shortText(p.text)}`]),
      state.prompt);
  });
  on("prompt-select", (v) => { state.prompt = Number(v); state.token = null; state.start = 0; });
  on("point-select", (v) => { state.point = v; });
  on("layer-select", (v) => { state.layer = Number(v); });
  on("measure-select", (v) => { state.measure = v; });
  on("stat-select", (v) => { state.stat = v; });
  on("method-select", (v) => { state.method = v; });
  on("deepdive-layer-select", (v) => { state.deepLayer = Number(v); });
  on("zoom-select", (v) => { state.zoom = v === "all" ? "all" : Number(v); });
  $("overview-button").addEventListener("click", () => openOverview());
  const pageSize = () => (currentWindow ? currentWindow.end - currentWindow.start : 1);
  $("window-prev").addEventListener("click", () => moveToken(-pageSize()));
  $("window-next").addEventListener("click", () => moveToken(pageSize()));
  const search = $("token-search");
  search.addEventListener("input", () => { state.search = search.value; update(); });
  search.addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    e.preventDefault();
    jumpToMatch(e.shiftKey ? -1 : 1);
  });
  $("search-prev").addEventListener("click", () => jumpToMatch(-1));
  $("search-next").addEventListener("click", () => jumpToMatch(1));
  $("token-strip").addEventListener("click", (event) => {
    const span = event.target.closest(".token[data-token]");
    if (span) select(Number(span.dataset.token));
  });
  stripInteractions($("heatmap-strip"));
  stripInteractions($("attention-strip"));
  document.addEventListener("keydown", (e) => {
    if (state.page !== "prompt" || ["SELECT", "INPUT", "TEXTAREA"].includes(e.target.tagName)) return;
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const keys = {
      ArrowLeft: () => moveToken(-1), ArrowRight: () => moveToken(1),
      PageUp: () => moveToken(-pageSize()), PageDown: () => moveToken(pageSize()),
      Home: () => moveToken(-Infinity), End: () => moveToken(Infinity),
      ArrowUp: () => { state.layer = Math.min(ix.n_layers - 1, state.layer + 1); update(); },
      ArrowDown: () => { state.layer = Math.max(0, state.layer - 1); update(); },
    };
    if (e.key === "/") {
      e.preventDefault();
      search.focus();
      return;
    }
    if (!keys[e.key]) return;
    e.preventDefault();
    keys[e.key]();
  });
  window.addEventListener("popstate", () => {
    readParams();
    update();
  });
  window.addEventListener("resize", () => { if (state.page === "prompt") update(); });
}

function safely(view, draw) {
  try {
    draw();
  } catch (err) {
    note($(view), `Could not draw this view: ${err.message}`);
  }
}

function syncControls() {
  document.body.dataset.page = state.page;
  $("overview-page").hidden = state.page === "prompt";
  $("prompt-page").hidden = state.page !== "prompt";
  $("overview-button").disabled = !state.index.overview;
  $("trait-select").value = state.trait;
  $("prompt-select").value = String(state.prompt);
  $("point-select").value = state.point;
  $("layer-select").value = String(state.layer);
  $("measure-select").value = state.measure;
  $("stat-select").value = state.stat;
}

async function update() {
  const id = ++renderId;
  document.body.dataset.state = "loading";
  syncControls();
  try {
    if (state.page === "overview") await updateOverview(id);
    else await updatePrompt(id);
  } finally {
    if (id === renderId) {
      document.body.dataset.cacheBytes = cache.bytes;
      document.body.dataset.cacheEntries = cache.map.size;
      document.body.dataset.state = "ready";
    }
  }
}

async function updateOverview(id) {
  if (!state.overview) {
    try {
      state.overview = await loadJSON(state.index.overview);
    } catch (err) {
      state.overview = { error: err };
    }
  }
  if (id !== renderId) return;
  syncUrl();
  if (state.overview.error) {
    note($("overview"), `Could not load the overview: ${state.overview.error.message}. `
      + `Build it with: .venv/bin/snakemake --cores 1 experiments/${state.exp}/viewer/overview.json `
      + `--config experiment=${state.exp}`);
    return;
  }
  safely("overview", () => renderOverview(state.overview));
}

async function updatePrompt(id) {
  const ix = state.index;
  const traits = ix.traits.map((t) => t.name);
  const prompt = promptEntry(state.prompt);
  $("prompt-text").textContent = prompt.text;
  $("response-text").textContent = prompt.response_text;
  const layers = Object.keys(files(state.trait, state.prompt).single_layer || {}).map(Number);
  if (!layers.includes(state.deepLayer)) state.deepLayer = layers.length ? layers[0] : null;
  fillSelect($("deepdive-layer-select"), layers.map((l) => [l, `layer ${l}`]), state.deepLayer);
  const weight = (v) => v.proj.byteLength;
  // The heatmap's data first (the prompt's tokens and shared data, the selected trait's projections):
  // it is drawn before the other traits' files are even asked for (a browser opens ~6 connections).
  const own = load(files(state.trait, state.prompt).all_layers, captureOf, weight);
  const [base, cap] = await Promise.all([promptBase(state.prompt), own]);
  if (id !== renderId) return;
  const capLoads = traits.map((t) => (t === state.trait ? own
    : load(files(t, state.prompt).all_layers, captureOf, weight)));
  const tokenViews = ["token-strip", "heatmap", "attention"];
  if (!base.toks || base.toks.error) {
    const text = base.toks ? `Could not load the tokens: ${base.toks.error.message}`
      : "No response file for this prompt.";
    tokenViews.concat(["trajectories", "dynamics", "decomposition"]).forEach((v) => note($(v), text));
    syncUrl();
    return;
  }
  const T = base.toks.tokens.length;
  currentTokens = base.toks.tokens;
  if (state.token === null) state.token = Math.min(base.toks.nPrompt, T - 1);
  state.token = clamp(state.token, 0, T - 1);
  const win = tokenWindow(T);
  currentWindow = win;
  const matches = searchMatches(base.toks.tokens);
  syncUrl();
  renderWindowControls(win);
  safely("token-strip", () => renderTokenStrip(base, matches));
  $("message").textContent = base.shared && base.shared.error
    ? `Shared data for prompt ${state.prompt}: ${base.shared.error.message}` : "";
  if (!cap || cap.error) {
    const text = cap ? `Could not load: ${cap.error.message}`
      : "No all-layers JSON for this trait and prompt (capture.save_json off, or the capture failed).";
    note($("heatmap"), text);
    $("heatmap-legend").replaceChildren();
  } else {
    safely("heatmap", () => renderHeatmap(base, cap, win, matches));
  }
  const shared = base.shared && !base.shared.error ? base.shared : null;
  const [caps, dyns, deep, rows] = await Promise.all([
    Promise.all(capLoads),
    Promise.all(traits.map((t) => load(files(t, state.prompt).dynamics))),
    load((files(state.trait, state.prompt).single_layer || {})[state.deepLayer]),
    shared ? attentionRows(shared, state.token).catch((error) => ({ error })) : Promise.resolve(null),
  ]);
  if (id !== renderId) return;
  safely("attention", () => renderAttention(base, rows, win));
  safely("trajectories", () => renderTrajectories(base, caps, dyns, win, matches));
  safely("dynamics", () => renderDynamics(dyns[traits.indexOf(state.trait)], win, matches));
  safely("decomposition", () => renderDeepDive(deep, layers, base, win, matches));
}

function readParams() {
  const params = new URLSearchParams(location.search);
  const ix = state.index;
  const trait = ix.traits.find((t) => t.name === params.get("trait")) || ix.traits.find((t) => t.name === state.trait)
    || ix.traits[0];
  state.trait = trait.name;
  const prompt = Number(params.get("prompt"));
  const hasPrompt = params.has("prompt") && ix.prompts.some((p) => p.index === prompt);
  state.prompt = hasPrompt ? prompt : (state.prompt ?? ix.prompts[0].index);
  const sets = ix.prompt_sets || ["default"];
  const current = ix.prompts.find((p) => p.index === state.prompt);
  state.set = sets.includes(params.get("set")) && !hasPrompt ? params.get("set")
    : ((current && current.prompt_set) || sets[0]);
  state.page = hasPrompt || !ix.overview ? "prompt" : "overview";
  const point = params.get("point");
  state.point = ix.sublayers.includes(point) ? point : ix.sublayers[ix.sublayers.length - 1];
  const layer = Number(params.get("layer"));
  const defaultLayer = Number.isInteger(trait.vector_layer) ? trait.vector_layer : Math.floor(ix.n_layers / 2);
  const validLayer = params.has("layer") && Number.isInteger(layer) && layer >= 0 && layer < ix.n_layers;
  state.layer = validLayer ? layer : defaultLayer;
  const token = Number(params.get("token"));
  state.token = params.has("token") && Number.isInteger(token) && token >= 0 ? token : null;
  state.measure = Object.hasOwn(MEASURES, params.get("measure")) ? params.get("measure") : "projection";
  state.stat = Object.hasOwn(STATS, params.get("stat")) ? params.get("stat") : "mean";
  const zoom = params.get("zoom");
  state.zoom = zoom === "all" ? "all" : (Number.isInteger(Number(zoom)) && Number(zoom) > 0 ? Number(zoom) : null);
  const [sort, dir] = (params.get("sort") || "").split(":");
  state.sort = sort && (sort === "prompt" || ix.traits.some((t) => t.name === sort)) ? sort : null;
  state.sortDir = dir === "asc" ? 1 : (dir === "desc" ? -1 : (state.sort === "prompt" ? 1 : -1));
}

async function main() {
  const params = new URLSearchParams(location.search);
  state.exp = params.get("exp") || "demo";
  const cacheMb = Number(params.get("cache_mb"));
  if (cacheMb > 0) cache = new LRU(cacheMb * 2 ** 20);
  if (!EXPERIMENT_NAME.test(state.exp)) {
    $("message").textContent = `Not an experiment name: ${state.exp}`;
    document.body.dataset.state = "error";
    return;
  }
  try {
    state.index = await loadJSON("viewer/index.json");
  } catch (err) {
    $("message").textContent = `No viewer index for experiment "${state.exp}" (${err.message}). Build it with: `
      + `.venv/bin/snakemake --cores 1 experiments/${state.exp}/viewer/index.json --config experiment=${state.exp}`;
    document.body.dataset.state = "error";
    return;
  }
  const ix = state.index;
  if (!ix.traits.length || !ix.prompts.length) {
    $("message").textContent = `Experiment "${state.exp}" has no captured traits or prompts yet.`;
    document.body.dataset.state = "error";
    return;
  }
  readParams();
  $("experiment-info").textContent = `experiment ${ix.experiment}, model ${ix.model}, ${ix.n_layers} layers, `
    + `${ix.traits.length} traits, ${ix.prompts.length} prompts`
    + (Object.keys(ix.left_out || {}).length ? `; left out: ${Object.entries(ix.left_out).map(([t, why]) => `${t} (${why})`).join("; ")}` : "");
  setupControls();
  await update();
}

main();

// Token-aligned drawing shared by the prompt views: the token axis, SVG matrices (heatmap,
// attention, heads, neurons), SVG charts (trajectories, dynamics, decomposition) and the
// canvas strips that show every token at once.

import { actions, state } from "./state.js";
import { legend } from "./scales.js";
import { clamp, fmt, shortToken, svgEl, titled } from "./util.js";

export const CELL = 18; // px per token column at most; narrower when many tokens are shown at once
export const MIN_LABEL = 11; // px a rotated token label needs: narrower columns label every k-th token
export const LEFT = 74; // room for row labels and the y axis
export const TOP = 22; // room for the prompt / response labels
export const LABELS = 86; // room for the rotated token labels
const ROW = 18; // px per matrix row at most; deep models get thinner rows
const MATRIX_HEIGHT = 360; // px the layer rows of a deep model's heatmap share
const CHART_HEIGHT = 200;
const STRIP_HEIGHT = 44; // px of a canvas overview strip

export function segment(t, nPrompt) {
  return t < nPrompt ? "prompt" : "response";
}

export function windowColumns(tokens, win) {
  const columns = [];
  for (let t = win.start; t < win.end; t++) columns.push({ index: t, token: tokens[t] });
  return columns;
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

// rows: [{label, values}] drawn top to bottom; columns: [{index, token}], one per value (the window);
// colour(v, row) fills a cell.
// band: optional extra {height, draw(svg, y)} under the token labels (the logit lens).
export function drawMatrix(container, { rows, columns, nPrompt, colour, selected, onSelect, describe, win, matches,
  band }) {
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
        fill: colour(v, row), class: "cell", "data-row": r, "data-token": columns[c].index, "data-value": v,
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
export function drawChart(container, { tokens, nPrompt, series, bars = [], selected, onSelect, decorate, win,
  matches }) {
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
  tokenAxis(svg, windowColumns(tokens, win), nPrompt, CHART_HEIGHT, selected, win, matches);
  clickable(svg, onSelect);
  container.replaceChildren(legend(series.concat(bars)), svg);
}

// A canvas overview of a whole [rows x T] matrix (every token, one pixel row band per layer),
// the window outlined, the selected token and search matches marked.
export function drawStrip(canvas, { T, nRows, value, rgb, win, selected, nPrompt, matches = [], keys = T }) {
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
      const c = rgb(value(r, t), r);
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

// A click or a drag on a strip selects the token under the pointer (the window follows).
export function stripInteractions(canvas) {
  let dragging = false;
  let pending = null;
  const go = (event) => {
    pending = stripToken(canvas, event);
    requestAnimationFrame(() => {
      if (pending !== null && pending !== state.token) actions.select(pending);
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

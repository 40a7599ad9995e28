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

export function colourBar(container, limit, caption) {
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

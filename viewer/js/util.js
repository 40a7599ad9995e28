// Small DOM and text helpers. Data reaches the page only through textContent and SVG
// attributes, never as HTML: prompts and tokens are arbitrary text (they can hold markup).

const SVG_NS = "http://www.w3.org/2000/svg";

export const $ = (id) => document.getElementById(id);

export const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));

export function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

export function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

export function titled(node, text) {
  node.appendChild(svgEl("title", {}, text));
  return node;
}

export function note(container, text) {
  container.replaceChildren(el("p", { class: "note" }, text));
}

// A <select>'s options as [[value, text]], rebuilt only when they changed (keeps focus and scroll).
export function fillSelect(select, options, value) {
  const same = select.options.length === options.length
    && options.every(([v, text], i) => select.options[i].value === String(v) && select.options[i].text === text);
  if (!same) select.replaceChildren(...options.map(([v, text]) => el("option", { value: v }, text)));
  select.value = String(value);
}

// A token as a short one-line label: whitespace and control characters made visible.
export function showToken(token) {
  const visible = String(token)
    .replace(/[\u0000-\u001f\u007f]/g, (c) => ({ "\n": "\u21b5", "\t": "\u21e5", "\r": "\u240d" })[c]
      || "\\x" + c.charCodeAt(0).toString(16).padStart(2, "0"))
    .replace(/ /g, "\u00b7");
  return visible === "" ? "\u2205" : visible;
}

export function shortToken(token, max = 12) {
  const s = showToken(token);
  return s.length > max ? s.slice(0, max - 1) + "\u2026" : s;
}

export function shortText(text, max = 70) {
  const one = text.replace(/\s+/g, " ");
  return one.length > max ? one.slice(0, max - 1) + "\u2026" : one;
}

export function fmt(v) {
  return Number.isFinite(v) ? v.toFixed(Math.abs(v) >= 100 ? 1 : 3) : "n/a";
}

export function fmt3(v) { // three significant digits, as the overview stores them
  return Number.isFinite(v) ? String(Number(v.toPrecision(3))) : "n/a";
}

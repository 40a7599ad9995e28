// The token strip, token search, and the window of tokens every token-aligned view draws;
// keys and buttons that move the selected token.

import { CELL, LEFT, MIN_LABEL, segment } from "./draw.js";
import { actions, state } from "./state.js";
import { $, clamp, el, fillSelect, showToken } from "./util.js";

const FIT_ALL = 120; // up to this many tokens every token is shown by default; beyond, a window of...
const DEFAULT_WINDOW = 100; // ...this many tokens, moved with the selection or the strip
const ZOOMS = [50, 100, 200];

const current = { tokens: [], win: null }; // the open prompt's tokens and window, for keys and search

function zoomSize(T) {
  const z = state.zoom === null ? (T <= FIT_ALL ? "all" : DEFAULT_WINDOW) : state.zoom;
  return z === "all" ? T : Math.min(T, z);
}

// {start, end, cw, every}: tokens start..end-1 at cw px each, every k-th one labelled.
// The window always holds the selected token: it moves when the selection leaves it.
export function tokenWindow(tokens) {
  const T = tokens.length;
  const size = Math.max(1, zoomSize(T));
  let start = clamp(state.start, 0, Math.max(0, T - size));
  const t = state.token;
  if (t !== null && (t < start || t >= start + size)) start = clamp(t - Math.floor(size / 2), 0, Math.max(0, T - size));
  state.start = start;
  const avail = Math.max(300, ($("heatmap").clientWidth || 1200) - LEFT - 16);
  const cw = Math.max(2, Math.min(CELL, Math.floor(avail / size)));
  const every = cw >= MIN_LABEL ? 1 : Math.ceil(MIN_LABEL / cw);
  const win = { start, end: Math.min(T, start + size), size, cw, T, every, plotWidth: avail };
  Object.assign(current, { tokens, win });
  return win;
}

export function searchMatches(tokens) {
  const q = state.search.toLowerCase();
  if (!q) return [];
  const hits = [];
  tokens.forEach((token, t) => {
    const s = String(token).toLowerCase();
    if (s.includes(q) || showToken(s).includes(q)) hits.push(t);
  });
  return hits;
}

export function renderTokenStrip(base, matches) {
  const { tokens, nPrompt } = base.toks;
  const strip = $("token-strip");
  const hit = new Set(matches);
  strip.replaceChildren(...tokens.map((token, t) => el("span", {
    class: `token ${segment(t, nPrompt)}${t === state.token ? " selected" : ""}` + (hit.has(t) ? " match" : ""),
    "data-token": t, title: `#${t} ${JSON.stringify(token)}` }, showToken(token))));
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

export function renderWindowControls(win) {
  const T = win.T;
  const zoom = state.zoom === null ? (T <= FIT_ALL ? "all" : DEFAULT_WINDOW) : state.zoom;
  const options = ZOOMS.filter((z) => z < T).map((z) => [z, `${z} tokens`]).concat([["all", `all ${T} tokens`]]);
  fillSelect($("zoom-select"), options, options.some(([v]) => String(v) === String(zoom)) ? zoom : "all");
  const part = win.end - win.start < T;
  $("window-info").textContent = part ? `tokens ${win.start}\u2013${win.end - 1} of ${T}` : `${T} tokens`;
  $("window-prev").disabled = win.start <= 0;
  $("window-next").disabled = win.end >= T;
  document.body.dataset.windowed = part ? "yes" : "no";
}

// ---------- moving the selection ----------

function moveToken(delta) {
  const T = current.tokens.length;
  if (!T) return;
  actions.select(clamp((state.token || 0) + delta, 0, T - 1));
}

function jumpToMatch(step) {
  const matches = searchMatches(current.tokens);
  if (!matches.length) return;
  const t = state.token === null ? -1 : state.token;
  const next = step > 0 ? (matches.find((m) => m > t) ?? matches[0])
    : ([...matches].reverse().find((m) => m < t) ?? matches[matches.length - 1]);
  actions.select(next);
}

const pageSize = () => (current.win ? current.win.end - current.win.start : 1);

export function setupTokenControls() {
  $("zoom-select").addEventListener("change", (e) => {
    state.zoom = e.target.value === "all" ? "all" : Number(e.target.value);
    actions.update();
  });
  $("window-prev").addEventListener("click", () => moveToken(-pageSize()));
  $("window-next").addEventListener("click", () => moveToken(pageSize()));
  const search = $("token-search");
  search.addEventListener("input", () => { state.search = search.value; actions.update(); });
  search.addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    e.preventDefault();
    jumpToMatch(e.shiftKey ? -1 : 1);
  });
  $("search-prev").addEventListener("click", () => jumpToMatch(-1));
  $("search-next").addEventListener("click", () => jumpToMatch(1));
  $("token-strip").addEventListener("click", (event) => {
    const span = event.target.closest(".token[data-token]");
    if (span) actions.select(Number(span.dataset.token));
  });
  document.addEventListener("keydown", (e) => {
    if (state.page !== "prompt" || ["SELECT", "INPUT", "TEXTAREA"].includes(e.target.tagName)) return;
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const n = state.index.n_layers;
    const keys = {
      ArrowLeft: () => moveToken(-1), ArrowRight: () => moveToken(1),
      PageUp: () => moveToken(-pageSize()), PageDown: () => moveToken(pageSize()),
      Home: () => moveToken(-Infinity), End: () => moveToken(Infinity),
      ArrowUp: () => { state.layer = Math.min(n - 1, state.layer + 1); actions.update(); },
      ArrowDown: () => { state.layer = Math.max(0, state.layer - 1); actions.update(); },
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
}

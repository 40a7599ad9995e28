// Model variants (config `variants:`): a picker for which model read whose responses, and a difference
// mode (that model minus the vector variant, on the same responses) for the overview and the heatmap.
// Reads experiments/{exp}/variants/viewer.json (docs/formats.md "Model variants"); without it (a
// one-model experiment) nothing is shown and every call below returns the ordinary files.
// Paths: a pair's files are the ordinary ones (relative to the experiment) under the pair's folder.

import { captureOf, load, loadJSON } from "./data.js";
import { actions, state } from "./state.js";
import { $, el, fillSelect } from "./util.js";

let vx = null; // variants/viewer.json

const key = (v, s) => `${v}|${s}`;
const pairOf = (v, s) => vx && vx.pairs.find((p) => p.variant === v && p.responses_from === s);
const isReference = () => !vx || (state.variant === vx.reference && state.from === vx.reference);

// The difference needs the vector variant's reading of the same responses.
function canDiff() {
  return Boolean(vx) && state.variant !== vx.reference && Boolean(pairOf(vx.reference, state.from));
}

function label(p) {
  return p.variant === p.responses_from ? `${p.variant} (own responses)` : `${p.variant} on ${p.responses_from}'s responses`;
}

function choose(v, s, diff) {
  state.variant = v;
  state.from = s;
  state.diff = diff && canDiff();
  state.overview = null; // the overview is the chosen pair's (or the difference)
  syncVariantControls();
  actions.update();
}

export function syncVariantControls() {
  if (!vx) return;
  fillSelect($("variant-select"), vx.pairs.map((p) => [key(p.variant, p.responses_from), label(p)]),
    key(state.variant, state.from));
  const box = $("variant-diff");
  box.disabled = !canDiff();
  box.checked = state.diff;
  document.body.dataset.variant = key(state.variant, state.from) + (state.diff ? " diff" : "");
}

// Loads variants/viewer.json (if the experiment has one), reads variant, from and diff from the URL,
// and adds the picker to the header.
export async function setupVariants() {
  if (!state.index.variants) return; // a one-model experiment has no variants/viewer.json to ask for
  try {
    vx = await loadJSON("variants/viewer.json");
  } catch {
    vx = null;
    return;
  }
  const params = new URLSearchParams(location.search);
  const asked = pairOf(params.get("variant"), params.get("from"));
  state.variant = asked ? asked.variant : vx.reference;
  state.from = asked ? asked.responses_from : vx.reference;
  state.diff = params.get("diff") === "1" && canDiff();
  const select = el("select", { id: "variant-select" });
  const box = el("input", { id: "variant-diff", type: "checkbox" });
  select.addEventListener("change", () => {
    const [v, s] = select.value.split("|");
    choose(v, s, state.diff);
  });
  box.addEventListener("change", () => choose(state.variant, state.from, box.checked));
  const diffLabel = el("label", { title: `this variant's score minus ${vx.reference}'s on the same tokens` });
  diffLabel.append(box, ` minus ${vx.reference}`);
  const pick = el("label", { title: "which model read whose responses" }, "Model ");
  pick.append(select);
  $("controls").append(pick, diffLabel);
  syncVariantControls();
}

const rebase = (path, root) => (path && root ? root + path : path);

// A prompt's index entry for the chosen pair: the source's response, the pair's shared file.
export function variantEntry(entry) {
  if (isReference()) return entry;
  const pair = pairOf(state.variant, state.from);
  const source = pairOf(state.from, state.from);
  const texts = vx.responses[state.from] || [];
  return { ...entry, response: rebase(entry.response, source.source_root || source.root),
    shared: rebase(entry.shared, pair.root), response_text: texts[entry.index] ?? entry.response_text };
}

// A trait's files for one prompt: the pair's all-layers file; dynamics and the deep dive are the vector
// variant's own only.
export function variantFiles(files) {
  if (isReference()) return files;
  return { all_layers: rebase(files.all_layers, pairOf(state.variant, state.from).root) };
}

function minus(a, b) {
  if (!a || a.error) return a;
  if (!b || b.error || b.T !== a.T || b.L !== a.L) return { error: new Error(`no ${vx.reference} reading of these tokens`) };
  const proj = a.proj.map((v, i) => v - b.proj[i]);
  return { ...a, proj, difference: true };
}

// The heatmap's capture: the pair's, or in difference mode the pair's minus the vector variant's.
export function variantCapture(files, weight) {
  const own = load(variantFiles(files).all_layers, captureOf, weight);
  if (!state.diff) return own;
  const ref = pairOf(vx.reference, state.from);
  return Promise.all([own, load(rebase(files.all_layers, ref.root), captureOf, weight)]).then(([a, b]) => minus(a, b));
}

function overviewOf(v, s, ordinary) {
  return v === vx.reference && s === vx.reference ? loadJSON(ordinary) : Promise.resolve(vx.overviews[key(v, s)]);
}

// The overview of the chosen pair, or in difference mode each cell minus the vector variant's cell.
export async function variantOverview(ordinary) {
  if (isReference()) return loadJSON(ordinary);
  const own = await overviewOf(state.variant, state.from, ordinary);
  if (!state.diff) return own;
  const ref = await overviewOf(vx.reference, state.from, ordinary);
  const values = {};
  for (const [measure, stats] of Object.entries(own.values)) {
    values[measure] = {};
    for (const [stat, cells] of Object.entries(stats)) {
      const other = ((ref.values || {})[measure] || {})[stat] || [];
      values[measure][stat] = cells.map((v, i) => (v === null || other[i] === null || other[i] === undefined
        ? null : v - other[i]));
    }
  }
  return { ...own, values };
}

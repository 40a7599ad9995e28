// The header's controls (trait, prompt set, prompt, point, layer, score, statistic) and the
// view-local selects (dynamics method, deep-dive layer): filled from the index, kept in step
// with the state, and turned into state changes.

import { stripInteractions } from "./draw.js";
import { setupOverviewControls } from "./overview.js";
import { MEASURES, SCALES, actions, availableStats, promptName, promptSets, promptsOfSet, readParams, state } from "./state.js";
import { setupTokenControls } from "./tokens.js";
import { $, el, fillSelect, shortText } from "./util.js";

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

// The open set's prompts, each named by its set and its number within the set (as in the URL).
function fillPrompts() {
  fillSelect($("prompt-select"), promptsOfSet().map((p) => [p.index, `${promptName(p)}: ${shortText(p.text)}`]),
    state.prompt);
}

export function setupControls() {
  const ix = state.index;
  fillTraits($("trait-select"), ix.traits, state.trait);
  const sets = promptSets();
  fillSelect($("set-select"), sets.map((s) => [s, s]), state.set);
  $("set-select").closest("label").hidden = sets.length < 2;
  fillPrompts();
  fillSelect($("point-select"), ix.sublayers.map((s) => [s, s]), state.point);
  fillSelect($("layer-select"), [...Array(ix.n_layers).keys()].map((l) => [l, `layer ${l}`]), state.layer);
  fillSelect($("measure-select"), Object.keys(MEASURES).map((m) => [m, m]), state.measure);
  fillSelect($("stat-select"), availableStats().map((s) => [s, s]), state.stat);
  fillSelect($("scale-select"), Object.entries(SCALES), state.scale);
  const on = (id, apply) => $(id).addEventListener("change", (e) => { apply(e.target.value); actions.update(); });
  on("trait-select", (v) => { state.trait = v; });
  on("set-select", (v) => {
    state.set = v;
    const first = promptsOfSet()[0];
    if (first && !promptsOfSet().some((p) => p.index === state.prompt)) {
      [state.prompt, state.token, state.start] = [first.index, null, 0];
    }
  });
  on("prompt-select", (v) => { state.prompt = Number(v); state.token = null; state.start = 0; });
  on("point-select", (v) => { state.point = v; });
  on("layer-select", (v) => { state.layer = Number(v); });
  on("measure-select", (v) => { state.measure = v; });
  on("stat-select", (v) => { state.stat = v; });
  on("scale-select", (v) => { state.scale = v; });
  on("method-select", (v) => { state.method = v; });
  on("deepdive-layer-select", (v) => { state.deepLayer = Number(v); });
  $("overview-button").addEventListener("click", () => actions.openOverview());
  setupTokenControls();
  setupOverviewControls();
  stripInteractions($("heatmap-strip"));
  stripInteractions($("attention-strip"));
  window.addEventListener("popstate", () => {
    readParams();
    actions.update();
  });
  window.addEventListener("resize", () => { if (state.page === "prompt") actions.update(); });
}

// The controls show the state (after a click elsewhere, the back button, or a link).
export function syncControls() {
  document.body.dataset.page = state.page;
  $("overview-page").hidden = state.page === "prompt";
  $("prompt-page").hidden = state.page !== "prompt";
  $("overview-button").disabled = !state.index.overview;
  $("trait-select").value = state.trait;
  $("set-select").value = state.set;
  fillPrompts();
  $("point-select").value = state.point;
  $("layer-select").value = String(state.layer);
  $("measure-select").value = state.measure;
  $("stat-select").value = state.stat;
  $("scale-select").value = state.scale;
}

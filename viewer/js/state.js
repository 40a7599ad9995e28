// What the page shows, and its URL: every choice the user makes is in the query string, so a
// link (or the back button) reopens the same view. In the URL, `set` and `prompt` are a prompt
// set and a prompt's index within that set (as in the set's own file and the original project);
// inside the page, state.prompt is the prompt's "index" in the viewer index (unique across sets).

export const EXPERIMENT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
export const MEASURES = { projection: "projection onto the trait vector", cosine: "cosine (projection / residual norm)" };
// The heatmap's colour scale: per layer, since a real model's residual norm grows tens of times with depth.
export const SCALES = { auto: "auto", layer: "per layer", sequence: "one for all layers" };
export const STATS = { mean: "mean over response tokens", peak: "peak (largest |score|, signed) over response tokens",
  position: "mean over the tokens where the trait's vector was read (e.g. the prompt's last token)" };
const DEFAULT_SET = "default";

// The statistics the overview offers: "position" where its file gives the traits' vector positions.
export function availableStats(ov = state.overview) {
  return Object.keys(STATS).filter((s) => s !== "position" || Boolean(ov && ov.values[state.measure].position));
}
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

export const state = { exp: null, index: null, overview: null, page: "prompt", trait: null, prompt: null, point: null,
  layer: null, measure: "projection", stat: "mean", sort: null, sortDir: -1, group: null, token: null, method: null,
  deepLayer: null, zoom: null, start: 0, search: "", set: null, scale: "auto",
  variant: null, from: null, diff: false }; // token null: the first response token; variant, from, diff: js/variants.js

// What views call to change the page; app.js fills them in (views never import app.js).
// update(), select(token, layer?), openPrompt(prompt, trait?), openOverview().
export const actions = { update: null, select: null, openPrompt: null, openOverview: null };

// ---------- prompts and their sets ----------

export const setOf = (p) => p.prompt_set || DEFAULT_SET;
export const localIndex = (p) => p.set_index ?? p.index;

export function promptSets() {
  const listed = state.index.prompt_sets || [];
  return listed.length ? listed : [...new Set(state.index.prompts.map(setOf))];
}

// A prompt's name: its number within its prompt set, prefixed by the set unless it is the default one.
export function promptName(p) {
  if (!p) return "?";
  return setOf(p) !== DEFAULT_SET ? `${setOf(p)}/${localIndex(p)}` : `${localIndex(p)}`;
}

export function promptEntry(i) {
  return state.index.prompts.find((p) => p.index === i);
}

export function promptsOfSet(set = state.set) {
  return state.index.prompts.filter((p) => !set || setOf(p) === set);
}

export function findPrompt(set, local) {
  return state.index.prompts.find((p) => setOf(p) === set && localIndex(p) === local);
}

// The open prompt's name, as the URL and every caption give it.
export const currentName = () => promptName(promptEntry(state.prompt));

export function files(trait, prompt) {
  return ((state.index.files || {})[trait] || {})[String(prompt)] || {};
}

// ---------- small facts about the choices ----------

export function traitColour(trait) {
  return PALETTE[state.index.traits.findIndex((t) => t.name === trait) % PALETTE.length];
}

export function pointIndex() {
  return state.index.sublayers.indexOf(state.point);
}

export function measureName() {
  return state.measure === "cosine" ? "cosine" : "projection";
}

// ---------- the URL ----------

export function syncUrl(push = false) {
  const params = new URLSearchParams({ exp: state.exp });
  // The set is named whenever it is not implied: several sets, or one that is not the default.
  if (promptSets().length > 1 || state.set !== DEFAULT_SET) params.set("set", state.set);
  if (state.page === "prompt") {
    params.set("prompt", localIndex(promptEntry(state.prompt)));
    params.set("trait", state.trait);
  }
  params.set("point", state.point);
  params.set("layer", state.layer);
  if (state.measure !== "projection") params.set("measure", state.measure);
  if (state.scale !== "auto") params.set("scale", state.scale);
  if (state.page === "overview") {
    params.set("stat", state.stat);
    if (state.sort) params.set("sort", `${state.sort}:${state.sortDir > 0 ? "asc" : "desc"}`);
    if (state.group) params.set("group", state.group);
  } else {
    if (state.token !== null) params.set("token", state.token);
    if (state.zoom !== null) params.set("zoom", state.zoom);
  }
  if (state.variant) {
    params.set("variant", state.variant);
    params.set("from", state.from);
    if (state.diff) params.set("diff", "1");
  }
  const cacheMb = new URLSearchParams(location.search).get("cache_mb");
  if (cacheMb) params.set("cache_mb", cacheMb);
  const url = "?" + params.toString();
  if (push && url !== location.search) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

export function readParams() {
  const params = new URLSearchParams(location.search);
  const ix = state.index;
  const trait = ix.traits.find((t) => t.name === params.get("trait")) || ix.traits.find((t) => t.name === state.trait)
    || ix.traits[0];
  state.trait = trait.name;
  // No `set` in the URL: the first set (the default one, where there is one).
  const sets = promptSets();
  state.set = sets.includes(params.get("set")) ? params.get("set") : sets[0];
  const local = Number(params.get("prompt"));
  const asked = params.has("prompt") && Number.isInteger(local) ? findPrompt(state.set, local) : null;
  const current = promptEntry(state.prompt);
  const first = promptsOfSet()[0] || ix.prompts[0];
  state.prompt = (asked || (current && setOf(current) === state.set ? current : first)).index;
  state.page = asked || !ix.overview ? "prompt" : "overview";
  const point = params.get("point");
  state.point = ix.sublayers.includes(point) ? point : ix.sublayers[ix.sublayers.length - 1];
  const layer = Number(params.get("layer"));
  const defaultLayer = Number.isInteger(trait.vector_layer) ? trait.vector_layer : Math.floor(ix.n_layers / 2);
  const validLayer = params.has("layer") && Number.isInteger(layer) && layer >= 0 && layer < ix.n_layers;
  state.layer = validLayer ? layer : defaultLayer;
  const token = Number(params.get("token"));
  state.token = params.has("token") && Number.isInteger(token) && token >= 0 ? token : null;
  state.measure = Object.hasOwn(MEASURES, params.get("measure")) ? params.get("measure") : "projection";
  state.scale = Object.hasOwn(SCALES, params.get("scale")) ? params.get("scale") : "auto";
  state.stat = Object.hasOwn(STATS, params.get("stat")) ? params.get("stat") : "mean";
  const zoom = params.get("zoom");
  state.zoom = zoom === "all" ? "all" : (Number.isInteger(Number(zoom)) && Number(zoom) > 0 ? Number(zoom) : null);
  const [sort, dir] = (params.get("sort") || "").split(":");
  state.sort = sort && (sort === "prompt" || ix.traits.some((t) => t.name === sort)) ? sort : null;
  state.sortDir = dir === "asc" ? 1 : (dir === "desc" ? -1 : (state.sort === "prompt" ? 1 : -1));
  // A label's name is checked against the overview's labels when it is drawn (unknown: no grouping).
  state.group = params.get("group") || null;
}

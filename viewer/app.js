// traitflow viewer: plain JS modules + SVG (and two canvas strips) over the files one
// experiment's workflow wrote; no build step, nothing fetched from anywhere but this server.
// This entry module loads the index, then redraws the page from the state on every change:
//   js/state.js     the state and the URL         js/data.js        fetch, byte ranges, the cache
//   js/controls.js  the header's controls         js/tokens.js      token strip, search, window
//   js/overview.js  traits x prompts grid         js/heatmap.js     token x layer heatmap, logit lens
//   js/attention.js attention of one token        js/trajectories.js every trait at one layer
//   js/dynamics.js  one trait's dynamics          js/single_layer.js one layer's deep dive
//   js/steering.js  steered responses per ratio (overview page, loaded when opened)
//   js/variants.js  model variants: who read whose responses, and the difference from the vector variant
//   js/draw.js, js/scales.js, js/util.js: drawing, colours and DOM helpers the views share.

import { renderAttention } from "./js/attention.js";
import { setupControls, syncControls } from "./js/controls.js";
import { attentionRows, cacheStats, configure, load, loadJSON, promptBase } from "./js/data.js";
import { renderDynamics } from "./js/dynamics.js";
import { renderHeatmap } from "./js/heatmap.js";
import { renderOverview } from "./js/overview.js";
import { renderDeepDive } from "./js/single_layer.js";
import { setupSteering } from "./js/steering.js";
import { EXPERIMENT_NAME, actions, currentName, files, promptEntry, readParams, setOf, state, syncUrl }
  from "./js/state.js";
import { renderTokenStrip, renderWindowControls, searchMatches, tokenWindow } from "./js/tokens.js";
import { renderTrajectories } from "./js/trajectories.js";
import { setupVariants, variantCapture, variantEntry, variantFiles, variantOverview } from "./js/variants.js";
import { $, clamp, fillSelect, note } from "./js/util.js";

let renderId = 0; // a newer update makes an older one stop drawing

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
  syncControls();
  try {
    if (state.page === "overview") await updateOverview(id);
    else await updatePrompt(id);
  } finally {
    if (id === renderId) {
      const stats = cacheStats();
      document.body.dataset.cacheBytes = stats.bytes;
      document.body.dataset.cacheEntries = stats.entries;
      document.body.dataset.state = "ready";
    }
  }
}

async function updateOverview(id) {
  if (!state.overview) {
    try {
      state.overview = await variantOverview(state.index.overview); // the chosen model variant's (js/variants.js)
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
  const traits = state.index.traits.map((t) => t.name);
  const prompt = variantEntry(promptEntry(state.prompt));
  const here = (trait) => variantFiles(files(trait, state.prompt));
  $("prompt-text").textContent = prompt.text;
  $("response-text").textContent = prompt.response_text;
  const layers = Object.keys(here(state.trait).single_layer || {}).map(Number);
  if (!layers.includes(state.deepLayer)) state.deepLayer = layers.length ? layers[0] : null;
  fillSelect($("deepdive-layer-select"), layers.map((l) => [l, `layer ${l}`]), state.deepLayer);
  const weight = (v) => v.proj.byteLength;
  // The heatmap's data first (the prompt's tokens and shared data, the selected trait's projections):
  // it is drawn before the other traits' files are even asked for (a browser opens ~6 connections).
  const own = variantCapture(files(state.trait, state.prompt), weight);
  const [base, cap] = await Promise.all([promptBase(prompt), own]);
  if (id !== renderId) return;
  const capLoads = traits.map((t) => (t === state.trait ? own : variantCapture(files(t, state.prompt), weight)));
  if (!base.toks || base.toks.error) {
    const text = base.toks ? `Could not load the tokens: ${base.toks.error.message}`
      : "No response file for this prompt.";
    const views = ["token-strip", "heatmap", "attention", "trajectories", "dynamics", "decomposition"];
    views.forEach((v) => note($(v), text));
    syncUrl();
    return;
  }
  const T = base.toks.tokens.length;
  if (state.token === null) state.token = Math.min(base.toks.nPrompt, T - 1);
  state.token = clamp(state.token, 0, T - 1);
  const win = tokenWindow(base.toks.tokens);
  const matches = searchMatches(base.toks.tokens);
  syncUrl();
  renderWindowControls(win);
  safely("token-strip", () => renderTokenStrip(base, matches));
  $("message").textContent = base.shared && base.shared.error
    ? `Shared data for prompt ${currentName()}: ${base.shared.error.message}` : "";
  if (!cap || cap.error) {
    note($("heatmap"), cap ? `Could not load: ${cap.error.message}`
      : "No all-layers JSON for this trait and prompt (capture.save_json off, or the capture failed).");
    $("heatmap-legend").replaceChildren();
  } else {
    safely("heatmap", () => renderHeatmap(base, cap, win, matches));
  }
  const shared = base.shared && !base.shared.error ? base.shared : null;
  const [caps, dyns, deep, rows] = await Promise.all([
    Promise.all(capLoads),
    Promise.all(traits.map((t) => load(here(t).dynamics))),
    load((here(state.trait).single_layer || {})[state.deepLayer]),
    shared ? attentionRows(shared, state.token).catch((error) => ({ error })) : Promise.resolve(null),
  ]);
  if (id !== renderId) return;
  safely("attention", () => renderAttention(base, rows, win));
  safely("trajectories", () => renderTrajectories(base, caps, dyns, win, matches));
  safely("dynamics", () => renderDynamics(dyns[traits.indexOf(state.trait)], win, matches));
  safely("decomposition", () => renderDeepDive(deep, layers, base, win, matches));
}

function select(token, layer) {
  state.token = token;
  if (layer !== undefined) {
    state.layer = layer;
    $("layer-select").value = String(layer);
  }
  update();
}

// prompt: the prompt's index in the viewer index; its set becomes the open set.
function openPrompt(prompt, trait) {
  state.page = "prompt";
  state.prompt = prompt;
  state.set = setOf(promptEntry(prompt));
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

async function main() {
  const params = new URLSearchParams(location.search);
  state.exp = params.get("exp") || "demo";
  if (!EXPERIMENT_NAME.test(state.exp)) {
    $("message").textContent = `Not an experiment name: ${state.exp}`;
    document.body.dataset.state = "error";
    return;
  }
  configure(state.exp, Number(params.get("cache_mb")));
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
  Object.assign(actions, { update, select, openPrompt, openOverview });
  readParams();
  const leftOut = Object.entries(ix.left_out || {});
  $("experiment-info").textContent = `experiment ${ix.experiment}, model ${ix.model}, ${ix.n_layers} layers, `
    + `${ix.traits.length} traits, ${ix.prompts.length} prompts`
    + (leftOut.length ? `; left out: ${leftOut.map(([t, why]) => `${t} (${why})`).join("; ")}` : "");
  await setupVariants();
  setupControls();
  setupSteering();
  await update();
}

main();

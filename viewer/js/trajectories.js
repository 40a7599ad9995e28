// Cross-trait trajectories: every trait's score per token at the chosen layer and point, with
// dynamics markers for the traits whose dynamics were computed there.

import { drawChart } from "./draw.js";
import { dynamicsMethod, markers } from "./dynamics.js";
import { scoreFn } from "./heatmap.js";
import { actions, currentName, measureName, pointIndex, state, traitColour } from "./state.js";
import { $, note } from "./util.js";

// caps, dyns: per trait of the index (in its order): data.captureOf results and dynamics JSON (or null / {error}).
export function renderTrajectories(base, caps, dyns, win, matches) {
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
    tokens: base.toks.tokens, nPrompt: base.toks.nPrompt, series, selected: state.token,
    onSelect: (t) => actions.select(t), win, matches,
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
  $("trajectory-title").textContent = `prompt ${currentName()}, layer ${state.layer}, ${state.point}, ${measureName()}`
    + (missing.length ? ` (no capture for: ${missing.join(", ")})` : "");
}

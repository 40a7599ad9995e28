// Dynamics of the selected trait's score on one prompt: the score and its velocity, with
// markers at the peak, the commitment point and the persistent tokens after the peak.

import { drawChart } from "./draw.js";
import { actions, state, traitColour } from "./state.js";
import { $, el, fillSelect, fmt, note, showToken, svgEl, titled } from "./util.js";

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

// SVG markers for one trajectory on a chart's geometry g (drawChart's decorate).
export function markers(g, scores, dyn, colour, label) {
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

// The scoring method shown: the one chosen, where this file has it, else its first.
export function dynamicsMethod(dyn) {
  const methods = Object.keys(dyn.scores || {});
  return methods.includes(state.method) ? state.method : methods[0];
}

export function renderDynamics(dyn, win, matches) {
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
    tokens: dyn.tokens, nPrompt: dyn.n_prompt, selected: state.token, onSelect: (t) => actions.select(t), win, matches,
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

// Steering view (overview page): per trait, the unsteered response and the steered ones side by side, one
// column per ratio, for one layer, direction, position and control (the vector or its random direction).
// Read from experiments/{exp}/{trait}/steering/responses.json (written when steering.enabled); nothing is
// fetched until the section is opened, so an experiment without steering costs no request.
import { loadJSON } from "./data.js";
import { state } from "./state.js";
import { $, el, fillSelect, note } from "./util.js";

const picks = { trait: null, layer: null, direction: null, position: null, control: "vector" };

function options(values, label = (v) => String(v)) {
  return values.map((v) => [v, label(v)]);
}

function cell(response, behaviourSet) {
  const mark = response.behaviour === null || response.behaviour === undefined ? ""
    : response.behaviour ? " \u2713" : "";
  const td = el("td", { class: response.behaviour ? "steer-cell steer-hit" : "steer-cell" }, response.response + mark);
  td.title = `read-back ${response.read_back === null ? "n/a" : response.read_back.toFixed(2)}, `
    + `NLL ${response.nll === null ? "n/a" : response.nll.toFixed(2)}, distinct-2 ${response.distinct2.toFixed(2)}`
    + (behaviourSet ? `, behaviour ${response.behaviour ? "shown" : "not shown"}` : "");
  return td;
}

function render(record) {
  const conds = record.conditions;
  const distinct = (key, list = conds) => [...new Set(list.map((c) => c[key]))];
  const layers = distinct("layer");
  if (!layers.includes(picks.layer)) picks.layer = layers[0];
  const directions = distinct("direction", conds.filter((c) => c.layer === picks.layer));
  if (!directions.includes(picks.direction)) picks.direction = directions[0];
  const positions = distinct("position", conds.filter((c) => c.direction === picks.direction));
  if (!positions.includes(picks.position)) picks.position = positions[0];
  fillSelect($("steer-layer"), options(layers, (l) => `layer ${l}`), picks.layer);
  fillSelect($("steer-direction"), options(directions), picks.direction);
  fillSelect($("steer-position"), options(positions), picks.position);
  fillSelect($("steer-control"), [["vector", "the vector"], ["random", "random direction"]], picks.control);
  const shown = conds.filter((c) => c.layer === picks.layer && c.direction === picks.direction
    && c.position === picks.position && c.control === picks.control).sort((a, b) => a.ratio - b.ratio);
  const base = new Map(record.baseline.filter((b) => b.layer === picks.layer && b.direction === picks.direction)
    .map((b) => [b.key, b]));
  const withBehaviour = record.behaviour_classifier !== null;
  const head = el("tr");
  head.append(el("th", {}, "prompt"), el("th", {}, "unsteered"),
    ...shown.map((c) => el("th", {}, `ratio ${c.ratio} (coef ${Number(c.coefficient).toFixed(1)})`)));
  const rows = [...base.keys()].map((key) => {
    const tr = el("tr");
    tr.append(el("td", { class: "steer-prompt" }, record.prompts[key]), cell(base.get(key), withBehaviour));
    for (const c of shown) {
      const r = c.responses.find((x) => x.key === key);
      tr.append(r ? cell(r, withBehaviour) : el("td"));
    }
    return tr;
  });
  const table = el("table", { class: "steer-table" });
  table.append(head, ...rows);
  $("steering").replaceChildren(table);
  $("steering-title").textContent = `${record.trait}: ${record.method} vector, ${picks.direction} at layer `
    + `${picks.layer} (the output of decoder layer ${picks.layer}), positions: ${picks.position}`;
}

async function update() {
  if (!$("steering-view").open) return;
  const traits = state.index.traits.map((t) => t.name);
  if (!traits.includes(picks.trait)) picks.trait = traits[0];
  fillSelect($("steer-trait"), options(traits), picks.trait);
  try {
    render(await loadJSON(`${picks.trait}/steering/responses.json`));
  } catch (err) {
    note($("steering"), `No steering results for ${picks.trait} (${err.message}). Turn them on with `
      + `steering: {enabled: true} in experiments/${state.exp}/config.yaml and run the workflow.`);
  }
}

export function setupSteering() {
  $("steering-view").addEventListener("toggle", update);
  for (const key of ["trait", "layer", "direction", "position", "control"]) {
    $(`steer-${key}`).addEventListener("change", (e) => {
      const v = e.target.value;
      picks[key] = key === "layer" ? Number(v) : v;
      update();
    });
  }
}

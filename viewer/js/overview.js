// The overview: traits x prompts, one number per cell (a trait's mean or peak score over the
// response, or its mean where the trait's vector was read, at one layer and point), from viewer/overview.json. Prompts sort by a trait's score
// and group by a label the prompt set gives them ({"labels": {"refusal": true}}), so a
// researcher sees at once whether the prompts labelled for a trait rank on top.

import { colourBar, diverging } from "./scales.js";
import { MEASURES, STATS, actions, availableStats, measureName, promptName, promptsOfSet, state } from "./state.js";
import { $, el, fillSelect, fmt3, shortText } from "./util.js";

const LABEL_TEXT = { true: "\u2713", false: "", null: "?" };

function overviewValue(ov, a, b, layer, p) {
  const i = ((a * ov.prompts.length + b) * ov.n_layers + layer) * ov.sublayers.length + p;
  const v = ov.values[state.measure][state.stat][i];
  return v === null || v === undefined ? NaN : v;
}

// {name: [true | false | null per overview prompt]}: the prompts' labels (overview.json's "labels"
// and each prompt_meta entry's "labels"); {} for an overview without them.
export function overviewLabels(ov) {
  const meta = ov.prompt_meta || [];
  const names = ov.labels || [...new Set(meta.flatMap((m) => Object.keys((m && m.labels) || {})))];
  return Object.fromEntries(names.map((name) => [name, ov.prompts.map((_, b) => {
    const v = ((meta[b] && meta[b].labels) || {})[name];
    return typeof v === "boolean" ? v : null;
  })]));
}

// What a label cell's tooltip says about its prompt besides the label: its id and extra fields.
function aboutPrompt(m) {
  if (!m) return "";
  const parts = (m.id !== undefined ? [`id ${m.id}`] : [])
    .concat(Object.entries(m.fields || {}).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`));
  return parts.length ? ` (${parts.join("; ")})` : "";
}

// Row order (overview positions b): the open set's prompts, sorted by the chosen trait (cells
// without a value last) or by prompt number; grouped by a label when one is chosen (true first).
function rowOrder(ov, values, traitNames, labels) {
  const inSet = new Set(promptsOfSet().map((q) => q.index));
  const order = ov.prompts.map((_, b) => b).filter((b) => inSet.has(ov.prompts[b]));
  const sortBy = traitNames.indexOf(state.sort);
  if (sortBy >= 0) {
    order.sort((x, y) => {
      const vx = values[sortBy][x];
      const vy = values[sortBy][y];
      if (!Number.isFinite(vx) || !Number.isFinite(vy)) {
        return Number.isFinite(vx) ? -1 : (Number.isFinite(vy) ? 1 : x - y);
      }
      return state.sortDir * (vx - vy) || x - y;
    });
  } else if (state.sort === "prompt" && state.sortDir < 0) {
    order.reverse();
  }
  const by = labels[state.group];
  if (!by) return [{ rows: order }];
  return [true, false, null].map((value) => ({ value, rows: order.filter((b) => by[b] === value) }))
    .filter((g) => g.rows.length);
}

function mean(xs) {
  const finite = xs.filter(Number.isFinite);
  return finite.length ? finite.reduce((s, v) => s + v, 0) / finite.length : NaN;
}

function headRow(traitNames, labelNames) {
  const head = el("tr");
  const arrow = (key) => (state.sort === key ? (state.sortDir < 0 ? " \u25bc" : " \u25b2") : "");
  head.appendChild(el("th", { class: "sortable", "data-sort": "prompt", scope: "col",
    title: "Order by prompt number (click again to reverse)" }, "prompt" + arrow("prompt")));
  labelNames.forEach((name) => {
    head.appendChild(el("th", { class: "label-head" + (state.group === name ? " grouped" : ""), "data-group": name,
      scope: "col", title: `Label ${name} (\u2713: true). Click to group the prompts by it (again: no groups)` },
    name));
  });
  traitNames.forEach((name) => {
    head.appendChild(el("th", { class: "sortable trait-head", "data-sort": name, scope: "col",
      title: `Sort prompts by ${name} (click again to reverse)` }, name + arrow(name)));
  });
  const thead = el("thead");
  thead.appendChild(head);
  return thead;
}

// A group's first row: the label's value, its count, and each trait's mean over the group.
function groupRow(group, traitNames, labelNames, values, limit) {
  const tr = el("tr", { class: "group-head", "data-group": state.group, "data-value": String(group.value) });
  const what = group.value === null ? "no label" : String(group.value);
  tr.appendChild(el("th", { scope: "rowgroup", colspan: 1 + labelNames.length },
    `${state.group}: ${what} (${group.rows.length} prompt${group.rows.length === 1 ? "" : "s"})`));
  traitNames.forEach((name, a) => {
    const m = mean(group.rows.map((b) => values[a][b]));
    const td = el("td", { class: "group-mean", "data-trait": name, "data-value": m,
      title: `${name}: mean over the ${group.rows.length} prompts with ${state.group} ${what}` }, fmt3(m));
    td.style.backgroundColor = diverging(m, limit); // CSSOM: allowed under style-src 'self'
    tr.appendChild(td);
  });
  return tr;
}

export function renderOverview(ov) {
  const ix = state.index;
  const stats = availableStats(ov);
  if (!stats.includes(state.stat)) state.stat = "mean"; // a link asking for "position" where the file has none
  fillSelect($("stat-select"), stats.map((s) => [s, s]), state.stat);
  const view = $("overview");
  const p = ov.sublayers.indexOf(state.point);
  const layer = Math.min(state.layer, ov.n_layers - 1);
  const texts = new Map(ix.prompts.map((q) => [q.index, q.text]));
  const names = new Map(ix.prompts.map((q) => [q.index, promptName(q)]));
  const traitNames = ov.traits;
  const labels = overviewLabels(ov);
  const labelNames = Object.keys(labels);
  const values = traitNames.map((_, a) => ov.prompts.map((_, b) => overviewValue(ov, a, b, layer, p)));
  const limit = values.flat().reduce((m, v) => (Number.isFinite(v) ? Math.max(m, Math.abs(v)) : m), 0);
  const groups = rowOrder(ov, values, traitNames, labels);
  const table = el("table", { id: "overview-grid", class: "overview-grid" });
  table.appendChild(headRow(traitNames, labelNames));
  for (const group of groups) {
    const tbody = el("tbody");
    if (group.value !== undefined) tbody.appendChild(groupRow(group, traitNames, labelNames, values, limit));
    for (const b of group.rows) {
      const index = ov.prompts[b];
      const text = texts.get(index) ?? "";
      const tr = el("tr", { "data-prompt": index });
      tr.appendChild(el("th", { class: "prompt-head", scope: "row", "data-prompt": index, title: text },
        `#${names.get(index)} ${shortText(text, 48)}`));
      labelNames.forEach((name) => {
        const v = labels[name][b];
        tr.appendChild(el("td", { class: "label-cell", "data-label": name, "data-prompt": index,
          "data-value": String(v),
          title: `${name}: ${v === null ? "no label" : v}${aboutPrompt((ov.prompt_meta || [])[b])}` }, LABEL_TEXT[v]));
      });
      traitNames.forEach((name, a) => {
        const v = values[a][b];
        const td = el("td", { class: "ov-cell", "data-trait": name, "data-prompt": index, "data-value": v,
          title: `${name} on prompt #${names.get(index)}: ${state.stat} ${measureName()} at layer ${layer}, `
            + `${state.point} = ${fmt3(v)}\n\n${text}` },
        fmt3(v));
        td.style.backgroundColor = diverging(v, limit); // CSSOM: allowed under style-src 'self'
        if (Number.isFinite(v) && limit > 0 && Math.abs(v) / limit > 0.6) td.classList.add("dark");
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    }
    table.appendChild(tbody);
  }
  table.addEventListener("click", (event) => {
    const sorter = event.target.closest("th.sortable");
    if (sorter) {
      const key = sorter.dataset.sort;
      if (state.sort === key) state.sortDir = -state.sortDir;
      else [state.sort, state.sortDir] = [key, key === "prompt" ? 1 : -1]; // a trait: largest first
      return actions.update();
    }
    const grouper = event.target.closest("th.label-head");
    if (grouper) {
      state.group = state.group === grouper.dataset.group ? null : grouper.dataset.group;
      return actions.update();
    }
    const cell = event.target.closest("td.ov-cell, th.prompt-head");
    if (cell) actions.openPrompt(Number(cell.dataset.prompt), cell.dataset.trait || state.trait);
  });
  table.addEventListener("mouseover", (event) => {
    const cell = event.target.closest("[data-prompt]");
    if (!cell) return;
    const index = Number(cell.dataset.prompt);
    const trait = cell.dataset.trait;
    $("overview-hover").textContent = (trait ? `${trait}: ${fmt3(Number(cell.dataset.value))} \u2014 ` : "")
      + `prompt #${names.get(index)}: ${texts.get(index) ?? ""}`;
  });
  view.replaceChildren(table);
  const group = labels[state.group] ? state.group : "";
  fillSelect($("group-select"), [["", "none"], ...labelNames.map((n) => [n, n])], group);
  $("group-select").closest(".overview-tools").hidden = !labelNames.length;
  const shown = groups.reduce((n, g) => n + g.rows.length, 0);
  Object.assign(view.dataset, { layer, point: state.point, stat: state.stat, measure: state.measure,
    sort: state.sort || "", dir: state.sortDir, group, labels: labelNames.join(",") });
  colourBar($("overview-legend"), limit, `${STATS[state.stat]}, ${MEASURES[state.measure]}`);
  $("overview-title").textContent = `${traitNames.length} traits \u00d7 ${shown} prompts, `
    + `${state.stat} ${measureName()} at layer ${layer}, ${state.point}` + (group ? `, grouped by ${group}` : "");
}

export function setupOverviewControls() {
  $("group-select").addEventListener("change", (e) => {
    state.group = e.target.value || null;
    actions.update();
  });
}

// The Evaluation report: an `lmroute eval --json` file or an experiment's results.json, read in the
// browser (nothing is uploaded) and drawn as the CLI's plot and table show it.

import { lineChart } from "./charts.js";
import { el, number, pct, replace, table } from "./dom.js";

const $ = (id) => document.getElementById(id);
const MAX_BYTES = 64 * 1024 * 1024;
const COLUMNS = ["router", "APGR", "CPT(20%)", "CPT(50%)", "CPT(80%)", "strong % @t", "quality @50%"];

class FormatError extends Error {}
// A result file of an experiment kind the view has no drawing for.
class OtherKindError extends Error {}

function need(condition, message) {
  if (!condition) throw new FormatError(message);
}

function isNumber(value) {
  return typeof value === "number" || value === null; // NaN is written as null
}

function checkResult(name, r) {
  need(r && typeof r === "object", `router ${name}: expected an object of metrics`);
  need(isNumber(r.apgr), `router ${name}: "apgr" must be a number`);
  need(Array.isArray(r.points), `router ${name}: "points" must be a list of curve points`);
  for (const p of r.points) {
    need(p && typeof p.strong_share === "number" && typeof p.quality === "number",
      `router ${name}: each point needs numeric "strong_share" and "quality"`);
  }
}

function curve(name, r, index) {
  const oracle = name === "oracle";
  return {
    label: `${name} (APGR ${number(r.apgr, 3)})`,
    points: r.points.map((p) => [100 * p.strong_share, p.quality]),
    color: oracle ? "#000000" : undefined,
    dash: oracle ? "2 3" : undefined,
    index,
  };
}

function evalRow(name, r) {
  const seeds = r.seeds > 1;
  return [
    name + (seeds ? ` (${r.seeds} seeds)` : ""),
    { text: r.apgr === null ? "n/a" : r.apgr.toFixed(4) + (seeds ? ` ±${(r.apgr_sd || 0).toFixed(3)}` : ""),
      value: r.apgr, testid: `apgr:${name}` },
    pct(r.cpt20), pct(r.cpt50), pct(r.cpt80),
    `${pct(r.strong_share_at_threshold)} @${r.threshold}`
      + (typeof r.cost_at_threshold === "number" ? `, cost ${number(r.cost_at_threshold)}` : ""),
    r.quality_at_50 === null || r.quality_at_50 === undefined ? "n/a" : number(r.quality_at_50),
  ];
}

// One `lmroute eval --json` evaluation.
function renderEvaluation(data) {
  need(typeof data.benchmark === "string", '"benchmark" must be a string');
  need(data.routers && typeof data.routers === "object" && !Array.isArray(data.routers),
    '"routers" must map router names to their metrics');
  const routers = Object.entries(data.routers);
  need(routers.length > 0, '"routers" is empty: the file holds no result');
  for (const [name, r] of routers) checkResult(name, r);
  const unit = ["mmlu", "gsm8k"].includes(data.benchmark) ? "accuracy (%)" : "quality";
  const lines = [];
  if (typeof data.strong_quality === "number") {
    lines.push({ y: data.strong_quality, label: `strong: ${data.strong_model}`, color: "#d62728" });
  }
  if (typeof data.weak_quality === "number") {
    lines.push({ y: data.weak_quality, label: `weak: ${data.weak_model}`, color: "#7f7f7f" });
  }
  const head = `${data.benchmark}: ${data.n_prompts} prompts, protocol ${data.protocol}; strong ${data.strong_model}`
    + ` = ${number(data.strong_quality)}, weak ${data.weak_model} = ${number(data.weak_quality)}`
    // A benchmark with costs per item (the CLI's table shows them too).
    + (typeof data.strong_cost === "number" && typeof data.weak_cost === "number"
      ? `; mean cost per item: strong ${number(data.strong_cost)}, weak ${number(data.weak_cost)}` : "");
  // What the CLI prints under its title (a pair named the wrong way round).
  const warnings = Array.isArray(data.warnings) ? data.warnings : [];
  return [
    el("h2", { "data-testid": "report-title" }, head),
    ...warnings.map((w) => el("p", { class: "error", "data-testid": "report-warning" }, `warning: ${w}`)),
    lineChart({
      series: routers.map(([name, r], i) => curve(name, r, i)), lines,
      title: `Call–performance curves on ${data.benchmark} (${data.n_prompts} prompts, ${data.protocol} protocol)`,
      xLabel: "Strong model calls (%)", yLabel: `Performance: ${unit}`, xDomain: [0, 100],
    }),
    table(COLUMNS, routers.map(([name, r]) => evalRow(name, r)), { testid: "report-table" }),
  ];
}

function checkCurve(where, c) {
  need(c && typeof c === "object" && typeof c.label === "string", `${where}: expected a curve with a "label"`);
  need(isNumber(c.aiq), `${where}: "aiq" must be a number`);
  for (const key of ["points", "hull"]) {
    need(Array.isArray(c[key]), `${where}: "${key}" must be a list of cost–quality points`);
    for (const p of c[key]) {
      need(p && typeof p.cost === "number" && typeof p.quality === "number",
        `${where}: each of "${key}" needs numeric "cost" and "quality"`);
    }
  }
}

// A number as the CLI's N-model table writes it: "–" where the file has null (NaN: never reached).
function fixed(value, digits, prefix = "", suffix = "") {
  return typeof value === "number" ? `${prefix}${value.toFixed(digits)}${suffix}` : "–";
}

function costRow(what, c, id) {
  return [what, { text: fixed(c.aiq, 4), value: c.aiq, testid: `aiq:${id}${what}` },
    fixed(c.reach_cost, 3, "$"), fixed(typeof c.saving === "number" ? 100 * c.saving : null, 0, "", "%"),
    fixed(c.quality_at_cheapest, 4)];
}

// One `lmroute eval --models ... --json` evaluation: cost against quality, as `lmroute eval --plot`
// draws it (single models, the mixing baseline, each router's and the oracle's hull), above the
// CLI's table. An N-model experiment's evaluation (of a protocol) gets a subheading instead of the title.
function renderCostQuality(data, protocol = null) {
  need(typeof data.benchmark === "string", '"benchmark" must be a string');
  need(Array.isArray(data.models) && data.models.length > 0, '"models" must be a non-empty list of models');
  data.models.forEach((m, i) => need(m && typeof m.model === "string" && typeof m.cost === "number"
    && typeof m.quality === "number", `model ${i}: needs "model" and numeric "cost" and "quality"`));
  need(Array.isArray(data.curves), '"curves" must be a list of the routers\' curves');
  checkCurve("mixing_baseline", data.mixing_baseline);
  data.curves.forEach((c, i) => checkCurve(`curve ${i}`, c));
  const model = (name) => data.models.find((m) => m.model === name);
  const best = model(data.best_model), cheapest = model(data.cheapest_model);
  const n = data.models.length;
  const head = [`${data.benchmark}: ${data.prompts} prompts (${data.skipped_lines} lines skipped), ${n} models;`
    + ` costs in $ per 1,000 requests (${data.cost_source})`];
  if (best && cheapest) {
    head.push(`best single model ${best.model}: quality ${fixed(best.quality, 4)} at ${fixed(best.cost, 3, "$")};`
      + ` cheapest ${cheapest.model}: ${fixed(cheapest.quality, 4)} at ${fixed(cheapest.cost, 3, "$")}`);
  }
  const curves = [...data.curves, data.mixing_baseline];
  const costs = [...data.models, ...curves.flatMap((c) => c.hull)].map((p) => p.cost);
  // A free model (cost 0) has no place on a log axis: then the axis is linear.
  const xLog = costs.every((c) => c > 0);
  let lo = costs.reduce((a, b) => Math.min(a, b)), hi = costs.reduce((a, b) => Math.max(a, b));
  [lo, hi] = xLog ? [lo / 1.2, hi * 1.2] : [Math.min(0, lo), hi + 0.05 * (hi - lo) || 1];
  const hull = (c) => ({
    label: `${c.label} (AIQ ${number(c.aiq, 3)})`,
    points: c.hull.map((p) => [p.cost, p.quality]),
    color: c.label === "oracle" ? "#000000" : c === data.mixing_baseline ? "#7f7f7f" : undefined,
    dash: c.label === "oracle" ? "2 3" : c === data.mixing_baseline ? "6 4" : undefined,
  });
  const series = [
    { label: "single models", points: data.models.map((m) => [m.cost, m.quality]), color: "#7f7f7f", markers: true },
    hull(data.mixing_baseline), ...data.curves.map((c) => hull(c)),
  ];
  const id = protocol === null ? "" : `${protocol}:${data.benchmark}:`;
  const rows = curves.map((c) => costRow(c.label, c, id));
  if (best) rows.push(costRow(`best single: ${best.model}`, { reach_cost: best.cost, saving: 0 }, id));
  return [
    protocol === null ? el("h2", { "data-testid": "report-title" }, head[0])
      : el("h3", {}, `Protocol ${protocol}: ${head[0]}`),
    ...head.slice(1).map((line) => el("p", {}, line)),
    lineChart({
      series, xLog, xDomain: [lo, hi],
      title: `Cost–quality on ${data.benchmark} (${data.prompts} prompts, ${n} models)`,
      xLabel: `Cost: USD per 1,000 requests${xLog ? " (log scale)" : ""}`, yLabel: "Quality (mean score)",
    }),
    table(["", "AIQ", "cost to reach best", "saving", "quality at cheapest's cost"], rows,
      { testid: protocol === null ? "report-table" : `report-table:${protocol}:${data.benchmark}` }),
  ];
}

function ci(cell) {
  const c = cell.apgr_ci95;
  return Array.isArray(c) && c.length === 2 ? ` [${number(c[0], 3)}, ${number(c[1], 3)}]` : "";
}

// An experiment's results.json: one chart per (protocol, benchmark), one table per protocol.
function renderExperiment(data) {
  need(Array.isArray(data.cells) && data.cells.length > 0, '"cells" must be a non-empty list of results');
  data.cells.forEach((c, i) => {
    need(c && typeof c.router === "string" && typeof c.benchmark === "string" && typeof c.protocol === "string",
      `cell ${i}: needs "router", "benchmark" and "protocol"`);
    checkResult(c.router, c);
  });
  const out = [el("h2", { "data-testid": "report-title" }, `Experiment: ${data.cells.length} results`)];
  const protocols = [...new Set(data.cells.map((c) => c.protocol))];
  for (const protocol of protocols) {
    const cells = data.cells.filter((c) => c.protocol === protocol);
    const benchmarks = [...new Set(cells.map((c) => c.benchmark))];
    const routers = [...new Set(cells.map((c) => c.router))];
    out.push(el("h3", {}, `Protocol ${protocol}`));
    const header = ["router", ...benchmarks.map((b) => `${b} APGR [95% CI]`), ...benchmarks.map((b) => `${b} CPT(50%)`),
      ...benchmarks.map((b) => `${b} CPT(80%)`)];
    const find = (router, b) => cells.find((c) => c.router === router && c.benchmark === b);
    const rows = routers.map((router) => [router,
      ...benchmarks.map((b) => {
        const c = find(router, b);
        return c ? { text: (c.apgr === null ? "n/a" : c.apgr.toFixed(4)) + ci(c), value: c.apgr,
          testid: `apgr:${protocol}:${b}:${router}` } : "";
      }),
      ...benchmarks.map((b) => (find(router, b) ? pct(find(router, b).cpt50) : "")),
      ...benchmarks.map((b) => (find(router, b) ? pct(find(router, b).cpt80) : ""))]);
    out.push(table(header, rows, { testid: `report-table:${protocol}` }));
    const charts = el("div", { class: "charts" });
    for (const b of benchmarks) {
      const series = cells.filter((c) => c.benchmark === b).map((c, i) => curve(c.router, c, i));
      charts.append(lineChart({ series, title: `${b}, protocol ${protocol}`, xLabel: "Strong model calls (%)",
        yLabel: "Performance", xDomain: [0, 100] }));
    }
    out.push(charts);
  }
  return out;
}

// An N-model experiment's results.json (kind: n-models): an evaluation per protocol and file.
function renderCostQualityExperiment(data) {
  need(Array.isArray(data.evaluations) && data.evaluations.length > 0,
    '"evaluations" must be a non-empty list of cost–quality evaluations');
  const out = [el("h2", { "data-testid": "report-title" }, `N-model experiment: ${data.evaluations.length} evaluations`)];
  data.evaluations.forEach((e, i) => {
    need(e && typeof e === "object" && typeof e.protocol === "string", `evaluation ${i}: needs "protocol"`);
    out.push(...renderCostQuality(e, e.protocol));
  });
  return out;
}

export function renderReport(data) {
  need(data && typeof data === "object" && !Array.isArray(data), "the file must hold a JSON object");
  if ("cells" in data) return renderExperiment(data);
  if ("curves" in data) return renderCostQuality(data);
  if ("evaluations" in data) return renderCostQualityExperiment(data);
  const kind = data.config && typeof data.config.kind === "string" ? data.config.kind : null;
  if (kind !== null) {
    throw new OtherKindError(`the results of a kind: ${kind} experiment, which the report view does not draw`
      + " (its results.md and plots are in the same folder)");
  }
  need("routers" in data, 'no "routers" (lmroute eval --json), "curves" (lmroute eval --models --json) or'
    + ' "cells" (experiment results.json) in it');
  return renderEvaluation(data);
}

export class ReportView {
  constructor() {
    $("report-file").addEventListener("change", async (event) => {
      await this.open(event.target.files[0]);
      // Else choosing the same file again, fixed, would fire no change event and not be read.
      event.target.value = "";
    });
    const drop = $("report-drop");
    drop.addEventListener("dragover", (event) => event.preventDefault());
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      this.open(event.dataTransfer.files[0]);
    });
    // A file dropped anywhere else would be opened by the browser in place of the console, its state
    // lost. Dragged text is left alone: it still drops into the prompt.
    for (const type of ["dragover", "drop"]) {
      document.addEventListener(type, (event) => {
        if (event.dataTransfer && Array.from(event.dataTransfer.types).includes("Files")) event.preventDefault();
      });
    }
  }

  message(text) {
    $("report-message").textContent = text || "";
  }

  async open(file) {
    this.message("");
    if (!file) return;
    if (file.size > MAX_BYTES) {
      this.message(`${file.name} is ${(file.size / 2 ** 20).toFixed(0)} MB: a result file is far smaller.`);
      return;
    }
    let data;
    try {
      data = JSON.parse(await file.text());
    } catch (err) {
      replace($("report"));
      this.message(`${file.name} is not JSON (${err.message}).`);
      return;
    }
    try {
      replace($("report"), ...renderReport(data));
    } catch (err) {
      replace($("report"));
      if (err instanceof OtherKindError) {
        this.message(`${file.name} holds ${err.message}.`);
        return;
      }
      const why = err instanceof FormatError ? err.message : `it could not be drawn (${err.message})`;
      this.message(`${file.name} is not an lmroute evaluation or experiment result: ${why}.`);
    }
  }
}

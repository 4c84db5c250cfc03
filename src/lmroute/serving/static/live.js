// The Live view: /metrics read every few seconds and drawn. Families it knows get panels; every
// other family (a new model, a drift or target gauge another version adds) is listed generically.

import { shareBars, sparkline } from "./charts.js";
import { el, ms, number, replace, table } from "./dom.js";
import { histograms, parseMetrics, quantile, sumBy, total, values } from "./prometheus.js";

const INTERVAL_S = 2;
const HISTORY = 60;
const REQUESTS = "lmroute_requests";
const ROUTING = "lmroute_routing_latency_seconds";
const BATCH = "lmroute_scoring_batch_size";
const UPSTREAM = "lmroute_upstream_latency_seconds";
const UPSTREAM_ERRORS = "lmroute_upstream_errors";
const RETRIES = "lmroute_upstream_retries";
const ROUTER_ERRORS = "lmroute_router_errors";
const FALLBACKS = "lmroute_fallbacks";
const KNOWN = new Set([REQUESTS, ROUTING, BATCH, UPSTREAM, UPSTREAM_ERRORS, RETRIES, ROUTER_ERRORS, FALLBACKS]);
const SPEND = /spend|cost|dollar|usd/i;
const DRIFT = /drift/i;
const TARGET = /threshold|target|budget/i;
// The server's drift detector (lmroute.control): 1 per router from an alarm until a new reference.
const DRIFTED = "lmroute_drift_drifted";
// Requests collected toward a router's reference (a sample only while collecting), and of how many.
const COLLECTED = "lmroute_drift_collected";
const REFERENCE_SIZE = "lmroute_drift_reference_size";

const $ = (id) => document.getElementById(id);

function tile(label, text, testid, value, note) {
  return el("div", { class: "tile" }, el("div", { class: "muted" }, label),
    el("div", { class: "big", "data-testid": testid, "data-value": value }, text),
    note ? el("div", { class: "muted" }, note) : undefined);
}

function counted(family) {
  // A counter's samples end in _total; a gauge's or an untyped family's carry its own name.
  const own = values(family, family.type === "counter" ? "_total" : "");
  return own.length ? own : family.samples.filter((s) => !s.name.endsWith("_created"));
}

// The drift tile's text and a note under it.
function driftText(families, drift) {
  const drifted = families.get(DRIFTED);
  if (drifted) {
    const routers = counted(drifted);
    // The server has a detector per router from its first routed request (or calibration prompts),
    // none with detection off: /metrics cannot tell these two apart.
    if (!routers.length) return ["none watched", "no request routed yet, or drift detection off"];
    const bad = routers.filter((s) => s.value > 0).map((s) => s.labels.router);
    if (bad.length) return [`drifted: ${bad.join(", ")}`];
    // A router's first requests become its reference: until there are enough it is not watched
    // (a server older than these gauges exports neither, and its routers read as watched).
    const sizes = new Map(values(families.get(REFERENCE_SIZE)).map((s) => [s.labels.router, s.value]));
    const of = (router) => (sizes.has(router) ? number(sizes.get(router)) : "?");
    const collecting = values(families.get(COLLECTED)).map((s) =>
      [s.labels.router, `${number(s.value)}/${of(s.labels.router)}`]);
    if (!collecting.length) return [`no drift (${routers.length} watched)`];
    const watched = routers.length - collecting.length;
    const note = `its first requests become the reference${watched ? `; no drift (${watched} watched)` : ""}`;
    if (routers.length === 1) return [`collecting (${collecting[0][1]})`, note];
    return [`collecting: ${collecting.map(([router, n]) => `${router} (${n})`).join(", ")}`, note];
  }
  return [drift.length ? drift.flatMap(counted).map((s) => number(s.value)).join(" / ") : "not exported"];
}

function labelText(labels) {
  const parts = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
  return parts.length ? parts.join(", ") : "-";
}

export class LiveView {
  constructor(api, { showBanner }) {
    this.api = api;
    this.showBanner = showBanner;
    this.rates = [];
    this.previous = null;
    this.routerModels = [];
    // Why /v1/models failed, if it did: each good read of /metrics clears only its own problem.
    this.modelsProblem = "";
    this.reading = null;
    $("live-interval").textContent = String(INTERVAL_S);
    this.timer = setInterval(() => this.poll(), INTERVAL_S * 1000);
  }

  async refresh() {
    this.modelsProblem = "";
    try {
      const models = await this.api.request("v1/models");
      this.routerModels = models.data.data.filter((m) => m.owned_by === "lmroute").map((m) => m.id);
    } catch (err) {
      this.routerModels = [];
      if (err.status !== 401) this.modelsProblem = `Could not list the routers: ${err.message}`;
    }
    await this.poll();
  }

  // One read of /metrics at a time: on a server slower than the interval they would pile up.
  poll() {
    if (!this.reading) this.reading = this.read().finally(() => { this.reading = null; });
    return this.reading;
  }

  async read() {
    let text;
    try {
      text = (await this.api.request("metrics", { json: false })).text;
    } catch (err) {
      if (err.status !== 401) this.showBanner(`Could not read /metrics: ${err.message}`);
      return;
    }
    this.showBanner(this.modelsProblem);
    this.render(parseMetrics(text), performance.now() / 1000);
  }

  render(families, now) {
    const requests = values(families.get(REQUESTS), "_total");
    const count = total(requests);
    if (this.previous && now > this.previous.time) {
      this.rates.push(Math.max(0, count - this.previous.count) / (now - this.previous.time));
      if (this.rates.length > HISTORY) this.rates.shift();
    }
    this.previous = { count, time: now };
    const rate = this.rates.length ? this.rates[this.rates.length - 1] : 0;
    const fallbacks = total(values(families.get(FALLBACKS), "_total"));
    const upstreamErrors = total(values(families.get(UPSTREAM_ERRORS), "_total"));
    const routerErrors = total(values(families.get(ROUTER_ERRORS), "_total"));
    const spend = [...families.values()].filter((f) => SPEND.test(f.name));
    const drift = [...families.values()].filter((f) => DRIFT.test(f.name));
    const spendTotal = spend.length ? total(spend.flatMap(counted)) : NaN;
    const [driftShown, driftNote] = driftText(families, drift);
    replace($("live-tiles"),
      tile("requests / s", rate.toFixed(2), "live-rps", rate),
      tile("requests", number(count), "live-requests", count),
      tile("fallbacks", number(fallbacks), "live-fallbacks", fallbacks),
      tile("upstream errors", number(upstreamErrors), "live-upstream-errors", upstreamErrors),
      tile("router errors", number(routerErrors), "live-router-errors", routerErrors),
      tile("estimated spend", spend.length ? `$${spendTotal.toFixed(4)}` : "not exported",
        "live-spend", spend.length ? spendTotal : undefined),
      tile("drift", driftShown, "live-drift", undefined, driftNote));
    replace($("live-rate"), sparkline(this.rates, { unit: "/s" }));
    this.renderShare(requests);
    this.renderRouters(families);
    this.renderUpstreams(families);
    this.renderRouting(families);
    this.renderFaults(families);
    this.renderOther(families);
    $("live-updated").textContent = `Updated ${new Date().toLocaleTimeString()}.`;
  }

  renderShare(requests) {
    const byModel = [...sumBy(requests.filter((s) => s.labels.model !== "none"), "model")];
    const routed = byModel.reduce((acc, [, v]) => acc + v, 0);
    byModel.sort((a, b) => b[1] - a[1]);
    const rows = byModel.map(([model, n]) => [model, { text: number(n), value: n, testid: `routed:${model}` },
      routed ? `${(100 * n / routed).toFixed(1)}%` : "n/a"]);
    const byEndpoint = [...sumBy(requests, "endpoint")].map(([endpoint, n]) =>
      [endpoint, { text: number(n), value: n, testid: `endpoint:${endpoint}` }]);
    replace($("live-share"),
      routed ? shareBars(byModel.map(([label, n]) => ({ label, value: n / routed }))) : el("p", { class: "muted" },
        "No request routed yet."),
      table(["model", "requests", "share"], rows, { testid: "share-table" }),
      table(["endpoint", "requests"], byEndpoint));
  }

  renderRouters(families) {
    const targets = [...families.values()].filter((f) => TARGET.test(f.name) && !KNOWN.has(f.name));
    const rows = this.routerModels.map((id) => [id]);
    const node = [table(["model name (router at its setting)"], rows, { testid: "router-models" })];
    for (const f of targets.filter((f) => counted(f).length)) {
      node.push(table([f.name, "value"], counted(f).map((s) => [labelText(s.labels), number(s.value)])));
    }
    if (!rows.length) node.unshift(el("p", { class: "muted" }, "No router listed (is an API key needed?)."));
    replace($("live-routers"), ...node);
  }

  renderUpstreams(families) {
    const errors = sumBy(values(families.get(UPSTREAM_ERRORS), "_total"), "model");
    const retries = sumBy(values(families.get(RETRIES), "_total"), "model");
    const rows = histograms(families.get(UPSTREAM)).map((h) => {
      const model = h.labels.model;
      const p50 = quantile(0.5, h.buckets), p99 = quantile(0.99, h.buckets);
      return [model, { text: number(h.count), value: h.count, testid: `upstream-calls:${model}` },
        { text: ms(p50), value: p50, testid: `upstream-p50:${model}` },
        { text: ms(p99), value: p99, testid: `upstream-p99:${model}` },
        number(errors.get(model) || 0), number(retries.get(model) || 0)];
    });
    replace($("live-upstreams"), table(["model", "calls", "p50", "p99", "errors", "retries"], rows));
  }

  renderRouting(families) {
    const batches = new Map(histograms(families.get(BATCH)).map((h) => [h.labels.router, h]));
    const errors = sumBy(values(families.get(ROUTER_ERRORS), "_total"), "router");
    const rows = histograms(families.get(ROUTING)).map((h) => {
      const router = h.labels.router, batch = batches.get(router);
      return [router, { text: number(h.count), value: h.count, testid: `decisions:${router}` },
        ms(quantile(0.5, h.buckets)), ms(quantile(0.99, h.buckets)),
        batch && batch.count ? (batch.sum / batch.count).toFixed(2) : "n/a", number(errors.get(router) || 0)];
    });
    replace($("live-routing"), table(["router", "decisions", "p50", "p99", "mean batch", "errors"], rows));
  }

  renderFaults(families) {
    const fallbacks = values(families.get(FALLBACKS), "_total").map((s) =>
      [`${s.labels.from_model} → ${s.labels.to_model}`, s.labels.reason, number(s.value)]);
    const errors = values(families.get(UPSTREAM_ERRORS), "_total").map((s) =>
      [s.labels.model, s.labels.kind, number(s.value)]);
    const statuses = [...sumBy(values(families.get(REQUESTS), "_total"), "status")].map(([status, n]) =>
      [status, { text: number(n), value: n, testid: `status:${status}` }]);
    replace($("live-faults"),
      table(["fallback", "reason", "count"], fallbacks),
      table(["upstream", "error", "count"], errors),
      table(["HTTP status", "requests"], statuses));
  }

  renderOther(families) {
    const rows = [];
    for (const f of families.values()) {
      if (KNOWN.has(f.name)) continue;
      if (f.type === "histogram") {
        for (const h of histograms(f)) {
          rows.push([f.name, f.type, labelText(h.labels),
            `count ${number(h.count)}, p50 ${number(quantile(0.5, h.buckets))}, p99 ${number(quantile(0.99, h.buckets))}`]);
        }
        continue;
      }
      for (const s of counted(f)) {
        rows.push([{ text: f.name, class: "name" }, f.type, labelText(s.labels),
          { text: number(s.value), value: s.value, testid: `other:${s.name}:${labelText(s.labels)}` }]);
      }
    }
    replace($("live-other"), rows.length ? table(["metric", "type", "labels", "value"], rows, { testid: "other" })
      : el("p", { class: "muted" }, "None: every metric of this server has its panel above."));
  }
}

// SVG charts drawn by the page itself (no charting library): line charts, bars and sparklines.
// Text goes in with textContent only, so names from a file or a server never become markup.

const SVG = "http://www.w3.org/2000/svg";
export const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];

export function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceTicks(min, max, count = 5) {
  if (!(max > min)) return [min];
  const step0 = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= step0);
  const ticks = [];
  for (let t = Math.ceil(min / step) * step; t <= max + step * 1e-9; t += step) ticks.push(+t.toFixed(10));
  return ticks;
}

// [min, max] by a loop: Math.min(...values) overflows the stack past ~120,000 values (an exact-protocol
// curve has a point per distinct score).
function extent(values) {
  let min = Infinity, max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return [min, max];
}

// 1, 2 and 5 times the powers of ten between min and max (> 0); linear ticks on a narrower range.
function logTicks(min, max) {
  const ticks = [];
  for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e += 1) {
    for (const m of [1, 2, 5]) {
      const t = +(m * 10 ** e).toPrecision(6);
      if (t >= min && t <= max) ticks.push(t);
    }
  }
  return ticks.length >= 2 ? ticks : niceTicks(min, max);
}

// series: [{label, points: [[x, y]], color, dash, markers}] (markers: points without a line);
// lines: [{y, label, color}] (horizontal, dashed). xLog: a log x axis (every x > 0).
export function lineChart({ series, lines = [], title = "", xLabel = "", yLabel = "", xDomain, xLog = false }) {
  const W = 720, H = 420, m = { l: 64, r: 16, t: 34, b: 48 };
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title });
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = [...series.flatMap((s) => s.points.map((p) => p[1])), ...lines.map((l) => l.y)]
    .filter(Number.isFinite);
  const [x0, x1] = xDomain || extent(xs);
  let [y0, y1] = ys.length ? extent(ys) : [0, 1];
  const pad = (y1 - y0) * 0.05 || 0.5;
  y0 -= pad; y1 += pad;
  const tx = xLog ? Math.log10 : (x) => x;
  const X = (x) => m.l + ((tx(x) - tx(x0)) / (tx(x1) - tx(x0) || 1)) * (W - m.l - m.r);
  const Y = (y) => H - m.b - ((y - y0) / (y1 - y0 || 1)) * (H - m.t - m.b);
  root.append(svg("text", { x: W / 2, y: 20, "text-anchor": "middle", class: "title" }, title));
  for (const t of (xLog ? logTicks : niceTicks)(x0, x1)) {
    root.append(svg("line", { x1: X(t), x2: X(t), y1: m.t, y2: H - m.b, class: "grid" }));
    root.append(svg("text", { x: X(t), y: H - m.b + 16, "text-anchor": "middle" }, String(t)));
  }
  for (const t of niceTicks(y0, y1)) {
    root.append(svg("line", { x1: m.l, x2: W - m.r, y1: Y(t), y2: Y(t), class: "grid" }));
    root.append(svg("text", { x: m.l - 6, y: Y(t) + 4, "text-anchor": "end" }, String(t)));
  }
  root.append(svg("rect", { x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b, class: "frame" }));
  root.append(svg("text", { x: W / 2, y: H - 10, "text-anchor": "middle" }, xLabel));
  root.append(svg("text", { x: 14, y: H / 2, "text-anchor": "middle", transform: `rotate(-90 14 ${H / 2})` },
    yLabel));
  const legend = [];
  for (const line of lines) {
    root.append(svg("line", { x1: m.l, x2: W - m.r, y1: Y(line.y), y2: Y(line.y), stroke: line.color,
      "stroke-dasharray": "6 4", class: "series" }));
    legend.push({ label: line.label, color: line.color, dash: "6 4" });
  }
  series.forEach((s, i) => {
    const color = s.color || PALETTE[i % PALETTE.length];
    if (!s.markers) {
      const d = s.points.map((p, k) => `${k ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join("");
      root.append(svg("path", { d, stroke: color, "stroke-dasharray": s.dash || "none", class: "series" }));
    }
    if (s.markers || s.points.length <= 40) {
      const r = s.markers ? 4 : 2.5;
      for (const p of s.points) root.append(svg("circle", { cx: X(p[0]), cy: Y(p[1]), r, fill: color }));
    }
    legend.push({ label: s.label, color, dash: s.dash, markers: s.markers });
  });
  // Wide enough for the longest label (at a generous 7 px a character: the text cannot be measured
  // before it is drawn), so that a long model name is not cut off at the chart's edge; past the plot's
  // width a label is shortened with an ellipsis.
  const CHAR = 7;
  const longest = legend.reduce((n, item) => Math.max(n, item.label.length), 0);
  const width = Math.min(Math.max(242, 30 + CHAR * longest), W - m.l - m.r - 16);
  const fits = Math.floor((width - 30) / CHAR);
  legend.forEach((item, k) => {
    const y = H - m.b - 12 - (legend.length - 1 - k) * 16;
    const x = W - m.r - 8 - width;
    const label = item.label.length > fits ? `${item.label.slice(0, fits - 1)}…` : item.label;
    root.append(item.markers ? svg("circle", { cx: x + 12, cy: y - 4, r: 4, fill: item.color })
      : svg("line", { x1: x, x2: x + 24, y1: y - 4, y2: y - 4, stroke: item.color,
        "stroke-dasharray": item.dash || "none", class: "series" }));
    root.append(svg("text", { x: x + 30, y, class: "legend" }, label));
  });
  return root;
}

// Horizontal bars: rows [{label, value}] with value in [0, 1], drawn as shares.
export function shareBars(rows) {
  const W = 420, row = 24;
  const root = svg("svg", { viewBox: `0 0 ${W} ${Math.max(row, rows.length * row)}`, class: "bars" });
  rows.forEach((r, i) => {
    const width = Math.max(0, Math.min(1, r.value)) * (W - 170);
    root.append(svg("text", { x: 0, y: i * row + 16 }, r.label));
    root.append(svg("rect", { x: 110, y: i * row + 4, width, height: row - 8,
      fill: PALETTE[i % PALETTE.length] }));
    root.append(svg("text", { x: 116 + width, y: i * row + 16 }, `${(100 * r.value).toFixed(1)}%`));
  });
  return root;
}

// A sparkline of values (oldest first), labelled with the latest.
export function sparkline(values, { unit = "" } = {}) {
  const W = 420, H = 80;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "spark" });
  if (values.length < 2) {
    root.append(svg("text", { x: 0, y: H / 2, class: "muted" }, "measuring the request rate..."));
    return root;
  }
  const max = Math.max(1e-9, ...values);
  const X = (i) => (i / (values.length - 1)) * (W - 70);
  const Y = (v) => H - 6 - (v / max) * (H - 16);
  const d = values.map((v, i) => `${i ? "L" : "M"}${X(i).toFixed(1)},${Y(v).toFixed(1)}`).join("");
  root.append(svg("path", { d, class: "series", stroke: PALETTE[0] }));
  const last = values[values.length - 1];
  root.append(svg("text", { x: W - 64, y: H / 2 }, `${last.toFixed(2)}${unit}`));
  return root;
}

// Small DOM helpers: elements built with textContent (never innerHTML), tables and number formats.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("data-") || k === "title" || k === "role") node.setAttribute(k, String(v));
    else node[k] = v;
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// A table: header cells, then rows of cells (a cell is text, a Node, or {text, value, testid}).
export function table(header, rows, { testid } = {}) {
  const cell = (tag, c) => {
    if (c !== null && typeof c === "object" && !(c instanceof Node)) {
      return el(tag, { "data-value": c.value, "data-testid": c.testid, class: c.class }, c.text);
    }
    return el(tag, {}, c);
  };
  return el("table", { "data-testid": testid },
    el("thead", {}, el("tr", {}, ...header.map((h) => cell("th", h)))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => cell("td", c))))));
}

export function replace(node, ...children) {
  node.replaceChildren(...children.filter((c) => c !== undefined && c !== null));
}

export function number(value, digits = 4) {
  if (value === null || value === undefined || Number.isNaN(value)) return "n/a";
  if (!Number.isFinite(value)) return value > 0 ? "+Inf" : "-Inf";
  if (Number.isInteger(value)) return value.toLocaleString("en-US");
  return value.toPrecision(digits);
}

export function pct(value) {
  return value === null || value === undefined || Number.isNaN(value) ? "n/a" : `${(100 * value).toFixed(2)}%`;
}

export function ms(seconds) {
  return Number.isFinite(seconds) ? `${(1000 * seconds).toFixed(1)} ms` : "n/a";
}

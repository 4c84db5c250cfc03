// The Prometheus text format read into families, and the arithmetic the Live view needs.

function unescapeLabel(value) {
  return value.replace(/\\(["\\n])/g, (_, c) => (c === "n" ? "\n" : c));
}

function parseSample(line) {
  const match = /^([A-Za-z_:][\w:]*)(\{.*\})?\s+(\S+)/.exec(line);
  if (!match) return null;
  const labels = {};
  if (match[2]) {
    for (const m of match[2].matchAll(/([A-Za-z_]\w*)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]] = unescapeLabel(m[2]);
  }
  const raw = match[3];
  const value = raw === "+Inf" ? Infinity : raw === "-Inf" ? -Infinity : Number(raw);
  return { name: match[1], labels, value };
}

// Map name -> {name, type, help, samples: [{name, labels, value}]}. Samples go to the family
// whose TYPE line precedes them (counters' samples end in _total, histograms' in _bucket...).
// A counter is named without _total whether the text says "# TYPE x_total counter" (the classic
// format of prometheus_client) or "# TYPE x counter" (OpenMetrics); the _created timestamps are dropped.
export function parseMetrics(text) {
  const families = new Map();
  let current = null;
  const family = (name) => {
    if (!families.has(name)) families.set(name, { name, type: "untyped", help: "", samples: [] });
    return families.get(name);
  };
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    const meta = /^#\s+(HELP|TYPE)\s+(\S+)\s*(.*)$/.exec(line);
    if (meta) {
      current = family(meta[2]);
      if (meta[1] === "TYPE") current.type = meta[3];
      else current.help = meta[3];
      continue;
    }
    if (line.startsWith("#")) continue;
    const sample = parseSample(line);
    if (!sample || sample.name.endsWith("_created")) continue;
    const owner = current && sample.name.startsWith(current.name) ? current : family(sample.name);
    owner.samples.push(sample);
  }
  const out = new Map();
  for (const f of families.values()) {
    if (f.name.endsWith("_created") && !f.samples.length) continue;
    if (f.type === "counter" && f.name.endsWith("_total")) f.name = f.name.slice(0, -"_total".length);
    out.set(f.name, f);
  }
  return out;
}

// The samples of a family that carry values (not the _created timestamps prometheus_client adds).
export function values(familyOrUndefined, suffix = "") {
  if (!familyOrUndefined) return [];
  return familyOrUndefined.samples.filter((s) => s.name === familyOrUndefined.name + suffix);
}

// Sum of the samples' values grouped by one label (or all of them when label is null).
export function sumBy(samples, label) {
  const out = new Map();
  for (const s of samples) {
    const key = label === null ? "" : (s.labels[label] ?? "");
    out.set(key, (out.get(key) || 0) + s.value);
  }
  return out;
}

export function total(samples) {
  return samples.reduce((acc, s) => acc + s.value, 0);
}

function labelKey(labels, without) {
  return JSON.stringify(Object.entries(labels).filter(([k]) => !without.includes(k)).sort());
}

// A histogram family's series: [{labels, count, sum, buckets: [[le, cumulative count], ...]}].
export function histograms(family) {
  const series = new Map();
  const get = (labels) => {
    const key = labelKey(labels, ["le"]);
    if (!series.has(key)) {
      const own = Object.fromEntries(Object.entries(labels).filter(([k]) => k !== "le"));
      series.set(key, { labels: own, count: 0, sum: 0, buckets: [] });
    }
    return series.get(key);
  };
  for (const s of family ? family.samples : []) {
    if (s.name === `${family.name}_bucket`) get(s.labels).buckets.push([Number(s.labels.le), s.value]);
    else if (s.name === `${family.name}_count`) get(s.labels).count = s.value;
    else if (s.name === `${family.name}_sum`) get(s.labels).sum = s.value;
  }
  for (const h of series.values()) h.buckets.sort((a, b) => a[0] - b[0]);
  return [...series.values()];
}

// Prometheus's histogram_quantile: linear within the bucket holding the rank; the +Inf bucket gives
// the largest finite bound; NaN when the histogram is empty.
export function quantile(q, buckets) {
  if (buckets.length < 2) return NaN;
  const count = buckets[buckets.length - 1][1];
  if (!(count > 0)) return NaN;
  const rank = q * count;
  let i = buckets.findIndex(([, c]) => c >= rank);
  if (i === buckets.length - 1) return buckets[buckets.length - 2][0];
  const [upper, countUpper] = buckets[i];
  const [lower, countLower] = i === 0 ? [0, 0] : buckets[i - 1];
  if (i === 0 && upper <= 0) return upper;
  return lower + (upper - lower) * ((rank - countLower) / (countUpper - countLower));
}

// Small DOM helpers: every value goes in as text, never as HTML.

// h builds an element: attrs sets attributes (class, data-*, href...) and
// on* handlers; children are nodes or strings (text).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// fill replaces el's children.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// table builds a table from column heads and rows of cells.
export function table(heads, rows, attrs = {}) {
  return h('table', attrs,
    h('thead', {}, h('tr', {}, heads.map((x) => h('th', {}, x)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))));
}

// parseDuration reads a Go duration ("1m30s", "250ms", "1.5µs") into seconds.
export function parseDuration(s) {
  if (typeof s === 'number') return s;
  if (!s) return 0;
  const units = { h: 3600, m: 60, s: 1, ms: 1e-3, 'µs': 1e-6, 'us': 1e-6, 'μs': 1e-6, ns: 1e-9 };
  let total = 0;
  const re = /([0-9.]+)(h|ms|m|s|µs|μs|us|ns)/g;
  let m;
  while ((m = re.exec(s)) !== null) total += parseFloat(m[1]) * units[m[2]];
  return s.startsWith('-') ? -total : total;
}

// fmtSeconds writes seconds for people: 350 ms, 2.4 s, 3m10s, 5.2 h.
export function fmtSeconds(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  const a = Math.abs(v);
  if (a < 1e-3) return (v * 1e6).toFixed(0) + ' µs';
  if (a < 1) return (v * 1e3).toFixed(a < 0.01 ? 2 : 0) + ' ms';
  if (a < 120) return v.toFixed(1) + ' s';
  if (a < 7200) return (v / 60).toFixed(1) + ' min';
  return (v / 3600).toFixed(1) + ' h';
}

export function fmtTime(t) {
  if (!t) return '–';
  const d = new Date(t);
  if (Number.isNaN(d.getTime()) || d.getFullYear() < 1971) return '–';
  return d.toLocaleString();
}

export function fmtNum(v, digits = 2) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  return Number(v).toLocaleString(undefined, { maximumFractionDigits: digits });
}

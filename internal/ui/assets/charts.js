// Charts, drawn by uPlot (vendored from the npm registry). Every chart the
// page shows is kept in `charts` by a key (and on window.ebbCharts, for
// tests and the curious): a chart is made once and fed new data on each
// poll.
import { fmtSeconds } from './dom.js';

export const charts = {};
window.ebbCharts = charts;

const palette = ['#2563eb', '#16a34a', '#dc2626', '#9333ea', '#ea580c', '#0891b2', '#ca8a04'];

function width(el) { return Math.max(280, el.clientWidth || el.parentElement.clientWidth || 600); }

// fmtCount writes a count or rate with three significant digits at most.
const fmtCount = (v) => (v === null || v === undefined ? '' : Number(Number(v).toPrecision(3)).toLocaleString());

// found returns the chart key if it is still in el, with its title set.
function found(key, el, title) {
  const u = charts[key];
  if (!u || !el.contains(u.root)) return null;
  const t = u.root.querySelector('.u-title');
  if (t && t.textContent !== title) t.textContent = title;
  return u;
}

// timeRange shows at least a minute, so that one sample is not drawn
// across years.
function timeRange(u) {
  const xs = u.data[0] || [];
  if (!xs.length) {
    const now = Date.now() / 1000;
    return [now - 60, now];
  }
  const lo = xs[0];
  const hi = xs[xs.length - 1];
  return hi - lo < 60 ? [hi - 60, hi + 1] : [lo, hi];
}

// timeChart makes (or finds) a time-series chart in el: defs is a list of
// {label, step, scale} per series; y formats the left axis ('seconds',
// 'count' or 'rate').
export function timeChart(key, el, title, defs, y = 'count') {
  const have = found(key, el, title);
  if (have) return have;
  destroy(key);
  const fmt = y === 'seconds' ? fmtSeconds : fmtCount;
  const opts = {
    title,
    width: width(el),
    height: 200,
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true, range: timeRange }, y: { range: (u, min, max) => [0, Math.max(max || 0, y === 'count' ? 1 : 1e-3) * 1.1] } },
    axes: [{}, { values: (u, vals) => vals.map(fmt), size: 70 }],
    series: [{}].concat(defs.map((d, i) => ({
      label: d.label,
      stroke: d.color || palette[i % palette.length],
      width: 2,
      spanGaps: true,
      value: (u, v) => (v === null || v === undefined ? '–' : fmt(v)),
      paths: d.step ? uPlot.paths.stepped({ align: 1 }) : undefined,
    }))),
  };
  const empty = [[]].concat(defs.map(() => []));
  const u = new uPlot(opts, empty, el);
  u.root.dataset.chart = key;
  charts[key] = u;
  return u;
}

// barChart makes (or finds) a chart of bars over named categories: defs
// lists {label, size} per series (size is the bar's share of a slot, so a
// narrow bar can stand inside a wide one).
export function barChart(key, el, title, defs, y = 'seconds', xLabel = '') {
  const have = found(key, el, title);
  if (have) return have;
  destroy(key);
  const fmt = y === 'seconds' ? fmtSeconds : fmtCount;
  let names = [];
  const opts = {
    title,
    width: width(el),
    height: 220,
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: false, range: () => [-0.5, Math.max(names.length, 1) - 0.5] }, y: { range: (u, min, max) => [0, Math.max(max || 0, 1e-3) * 1.1] } },
    axes: [
      { splits: () => names.map((_, i) => i), values: (u, vals) => vals.map((v) => names[v] || ''), gap: 4 },
      { values: (u, vals) => vals.map(fmt), size: 70 },
    ],
    series: [{ label: xLabel, value: (u, v) => names[v] || '' }].concat(defs.map((d, i) => ({
      label: d.label,
      stroke: d.color || palette[i % palette.length],
      fill: (d.color || palette[i % palette.length]) + '99',
      width: 1,
      points: { show: false },
      value: (u, v) => (v === null || v === undefined ? '–' : fmt(v)),
      paths: uPlot.paths.bars({ size: [d.size || 0.6, d.max || 80], align: 0 }),
    }))),
  };
  const u = new uPlot(opts, [[]].concat(defs.map(() => [])), el);
  u.root.dataset.chart = key;
  u.setNames = (n) => { names = n; u.names = n; };
  u.names = names;
  charts[key] = u;
  return u;
}

export function destroy(key) {
  if (charts[key]) {
    charts[key].destroy();
    delete charts[key];
  }
}

export function destroyAll() {
  for (const k of Object.keys(charts)) destroy(k);
}

window.addEventListener('resize', () => {
  for (const u of Object.values(charts)) {
    const el = u.root.parentElement;
    if (el) u.setSize({ width: width(el), height: u.height });
  }
});

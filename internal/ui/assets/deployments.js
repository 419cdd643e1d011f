// The deployments list (paginated and searched on the server) and one
// deployment's page: replicas, concurrency, requests and latency over
// time, cold starts by phase, scale decisions with their reasons, events,
// rollout, shadow, traffic split, pool placement and drift.
import { get, enc } from './api.js';
import { h, fill, table, parseDuration, fmtSeconds, fmtTime, fmtNum } from './dom.js';
import { timeChart, barChart, destroy } from './charts.js';

const pageSize = 50;

export class DeploymentList {
  constructor(main, params) {
    this.search = params.get('search') || '';
    this.tokens = ['']; // continue tokens of the pages seen; the last is this page's
    this.next = '';
    const input = h('input', { type: 'search', id: 'search', placeholder: 'search name or model', value: this.search, 'aria-label': 'search deployments' });
    let timer = 0;
    input.addEventListener('input', () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        this.search = input.value.trim();
        this.tokens = [''];
        history.replaceState(null, '', '#/deployments' + (this.search ? '?search=' + enc(this.search) : ''));
        this.refresh();
      }, 250);
    });
    this.count = h('span', { class: 'muted', id: 'count' });
    this.body = h('div', { id: 'deployments' });
    this.prev = h('button', { type: 'button', id: 'prev', onclick: () => { this.tokens.pop(); this.refresh(); } }, '← Previous');
    this.more = h('button', { type: 'button', id: 'next', onclick: () => { this.tokens.push(this.next); this.refresh(); } }, 'Next →');
    fill(main, h('h1', {}, 'Deployments'), h('div', { class: 'toolbar' }, input, this.count), this.body,
      h('div', { class: 'pager' }, this.prev, this.more));
  }

  async refresh() {
    const q = new URLSearchParams({ limit: String(pageSize) });
    if (this.search) q.set('search', this.search);
    const cont = this.tokens[this.tokens.length - 1];
    if (cont) q.set('continue', cont);
    const page = await get('/v1/deployments?' + q);
    this.next = page.continue || '';
    this.prev.disabled = this.tokens.length <= 1;
    this.more.disabled = !this.next;
    const from = (this.tokens.length - 1) * pageSize;
    const total = page.total ?? page.items.length;
    this.count.textContent = total === 0 ? 'no deployments' + (this.search ? ' match' : '') :
      `${from + 1}–${from + page.items.length} of ${total.toLocaleString()}`;
    const rows = page.items.map((d) => {
      const st = d.status || {};
      return [
        h('a', { href: '#/deployments/' + enc(d.name) }, d.name),
        st.modelVersion || d.spec.model,
        h('span', { class: 'replicas' }, `${st.readyReplicas || 0}/${st.replicas || 0}`),
        String(st.desiredReplicas || 0),
        `${d.spec.scaling?.minReplicas ?? 0}–${d.spec.scaling?.maxReplicas ?? 0}`,
        st.failure ? h('span', { class: 'error' }, st.failure) : (st.reason || ''),
      ];
    });
    fill(this.body, table(['name', 'model', 'ready/replicas', 'desired', 'min–max', 'state'], rows, { class: 'list' }));
  }
}

// maxObserved bounds what the page remembers of its own polls.
const maxObserved = 1800;

export class DeploymentDetail {
  constructor(main, name) {
    this.name = name;
    this.observed = []; // {t, replicas, ready, desired} per poll
    const sec = (id, title, ...rest) => h('section', { id, class: 'panel' }, h('h2', {}, title), ...rest);
    this.head = h('div', { id: 'summary' });
    this.replicasEl = h('div', { class: 'chart' });
    this.concEl = h('div', { class: 'chart' });
    this.reqEl = h('div', { class: 'chart' });
    this.latEl = h('div', { class: 'chart' });
    this.statsNote = h('p', { class: 'muted', hidden: true });
    this.coldEl = h('div', { class: 'chart' });
    this.coldTable = h('div');
    this.decisions = h('div');
    this.events = h('div');
    this.rollout = sec('rollout', 'Rollout'); this.rollout.hidden = true;
    this.shadow = sec('shadow', 'Shadow'); this.shadow.hidden = true;
    this.traffic = sec('traffic', 'Traffic split'); this.traffic.hidden = true;
    this.pool = sec('placement', 'Pool placement'); this.pool.hidden = true;
    this.driftEl = h('div', { class: 'chart' });
    this.driftBody = h('div');
    this.drift = sec('drift', 'Drift by feature', this.driftEl, this.driftBody); this.drift.hidden = true;
    this.cost = h('div');
    fill(main,
      h('p', {}, h('a', { href: '#/deployments' }, '← Deployments')),
      h('h1', {}, name), this.head,
      h('div', { class: 'grid' },
        sec('replicas-panel', 'Replicas', this.replicasEl),
        sec('concurrency-panel', 'Concurrency (autoscaler inputs)', this.concEl),
        sec('requests-panel', 'Requests', this.reqEl, this.statsNote),
        sec('latency-panel', 'Latency', this.latEl)),
      h('div', { class: 'grid' },
        sec('coldstart', 'Cold starts by phase', this.coldEl, this.coldTable),
        sec('cost-panel', 'Cost vs always-on (7 days)', this.cost)),
      this.rollout, this.shadow, this.traffic, this.pool, this.drift,
      sec('decisions', 'Scale decisions', this.decisions),
      sec('events', 'Events', this.events));
  }

  async refresh() {
    const base = '/v1/deployments/' + enc(this.name);
    const [d, decisions, stats, events, rollout, shadow, drift, cost] = await Promise.all([
      get(base),
      get(base + '/decisions', { optional: true }),
      get(base + '/stats', { optional: true }),
      get(base + '/events', { optional: true }),
      get(base + '/rollout', { optional: true }),
      get(base + '/shadow', { optional: true }),
      get(base + '/drift', { optional: true }),
      get(base + '/cost', { optional: true }),
    ]);
    const st = d.status || {};
    const now = Date.now() / 1000;
    this.observed.push({ t: now, replicas: st.replicas || 0, ready: st.readyReplicas || 0, desired: st.desiredReplicas || 0 });
    if (this.observed.length > maxObserved) this.observed.shift();
    this.summary(d);
    this.replicaChart(decisions ? decisions.items : []);
    this.concurrencyChart(decisions ? decisions.items : []);
    this.statsCharts(stats);
    this.coldStarts(st.replicaStatuses || []);
    this.decisionTable(decisions ? decisions.items : []);
    this.eventTable(events ? events.items : []);
    this.rolloutPanel(rollout);
    this.shadowPanel(shadow);
    this.trafficPanel(st.traffic || []);
    this.poolPanel(st.pool);
    this.driftPanel(drift);
    this.costPanel(cost);
  }

  summary(d) {
    const st = d.status || {};
    const s = d.spec.scaling || {};
    fill(this.head, h('dl', { class: 'facts' },
      h('dt', {}, 'model'), h('dd', {}, st.modelVersion || d.spec.model),
      h('dt', {}, 'ready / replicas'), h('dd', { id: 'replicas', 'data-testid': 'replicas' }, `${st.readyReplicas || 0}/${st.replicas || 0}`),
      h('dt', {}, 'desired'), h('dd', { id: 'desired' }, String(st.desiredReplicas || 0)),
      h('dt', {}, 'scaling'), h('dd', {}, `${s.minReplicas ?? 0}–${s.maxReplicas ?? 0} replicas, target ${s.targetConcurrency ?? '–'} in flight, to zero after ${s.scaleToZeroAfter || '–'}`),
      h('dt', {}, 'state'), h('dd', { class: st.failure ? 'error' : '' }, st.failure || st.reason || '–'),
      st.lastScaleTime ? [h('dt', {}, 'last scaled'), h('dd', {}, fmtTime(st.lastScaleTime))] : null));
  }

  replicaChart(items) {
    // desired: every decision (and the end of its repeats), then what the
    // page saw; replicas and ready: what the page saw while open.
    const desired = new Map();
    for (const r of items) {
      desired.set(Date.parse(r.time) / 1000, r.desired);
      if (r.until && r.repeats) desired.set(Date.parse(r.until) / 1000, r.desired);
    }
    for (const o of this.observed) desired.set(o.t, o.desired);
    const seen = new Map(this.observed.map((o) => [o.t, o]));
    const xs = [...desired.keys()].sort((a, b) => a - b);
    const data = [xs, xs.map((x) => desired.get(x)),
      xs.map((x) => (seen.has(x) ? seen.get(x).replicas : null)),
      xs.map((x) => (seen.has(x) ? seen.get(x).ready : null))];
    timeChart('replicas', this.replicasEl, 'replicas over time', [
      { label: 'desired', step: true }, { label: 'replicas', step: true }, { label: 'ready', step: true }]).setData(data);
  }

  concurrencyChart(items) {
    const xs = [], stable = [], panic = [], inflight = [];
    for (const r of items) {
      const m = r.metrics || {};
      const t = Date.parse(r.time) / 1000;
      if (xs.length && t <= xs[xs.length - 1]) continue;
      xs.push(t); stable.push(m.StableConcurrency ?? null); panic.push(m.PanicConcurrency ?? null); inflight.push(m.InFlight ?? null);
    }
    timeChart('concurrency', this.concEl, 'requests in flight', [
      { label: 'stable window' }, { label: 'panic window' }, { label: 'in flight', step: true }]).setData([xs, stable, panic, inflight]);
  }

  statsCharts(stats) {
    if (!stats) {
      this.statsNote.hidden = false;
      this.statsNote.textContent = 'This server keeps no request statistics (GET …/stats): see ebb_gateway_requests_total in Prometheus, or the Grafana dashboard shipped with the chart.';
      return;
    }
    this.statsNote.hidden = true;
    const iv = stats.intervalSeconds || 5;
    const it = stats.items;
    const xs = it.map((s) => Date.parse(s.time) / 1000);
    timeChart('requests', this.reqEl, `requests per second (${iv} s intervals)`, [
      { label: 'requests/s' }, { label: 'errors/s', color: '#dc2626' }], 'rate')
      .setData([xs, it.map((s) => s.rate), it.map((s) => s.errors / iv)]);
    timeChart('latency', this.latEl, 'latency percentiles', [
      { label: 'p50' }, { label: 'p90' }, { label: 'p99', color: '#dc2626' }], 'seconds')
      .setData([xs, it.map((s) => s.p50Seconds), it.map((s) => s.p90Seconds), it.map((s) => s.p99Seconds)]);
  }

  coldStarts(replicas) {
    const started = replicas.filter((r) => (r.coldStart || []).length);
    started.sort((a, b) => Date.parse(b.startedAt) - Date.parse(a.startedAt));
    const latest = started[0];
    const u = barChart('coldstart', this.coldEl, latest ? `latest cold start: replica ${latest.id}` : 'no cold start yet', [{ label: 'duration' }], 'seconds', 'phase');
    const phases = latest ? latest.coldStart : [];
    u.setNames(phases.map((p) => p.name.replace(/_/g, ' ')));
    u.setData([phases.map((_, i) => i), phases.map((p) => parseDuration(p.duration))]);
    const rows = started.slice(0, 10).map((r) => [r.id, r.state,
      r.coldStart.map((p) => `${p.name.replace(/_/g, ' ')} ${fmtSeconds(parseDuration(p.duration))}${p.cacheHit === true ? ' (cache hit)' : ''}`).join(' · '),
      fmtSeconds(r.coldStart.reduce((a, p) => a + parseDuration(p.duration), 0))]);
    fill(this.coldTable, rows.length ? table(['replica', 'state', 'phases', 'total'], rows) : h('p', { class: 'muted' }, 'No replica has started yet: send a request to wake it.'));
  }

  decisionTable(items) {
    const rows = items.slice(-15).reverse().map((r) => [
      fmtTime(r.time),
      `${r.before?.Desired ?? '–'} → ${r.desired}`,
      r.panic ? 'panic' : '',
      r.reason,
      fmtNum(r.metrics?.StableConcurrency),
      String(r.metrics?.InFlight ?? '–'),
      r.repeats ? `×${r.repeats + 1} until ${fmtTime(r.until)}` : '',
    ]);
    fill(this.decisions, rows.length ? table(['time', 'replicas', '', 'reason', 'stable concurrency', 'in flight', 'repeats'], rows) :
      h('p', { class: 'muted' }, 'No decision recorded yet.'));
  }

  eventTable(items) {
    const rows = items.slice(-20).reverse().map((e) => [fmtTime(e.time), e.type, e.reason, e.message, e.count > 1 ? `×${e.count}` : '']);
    fill(this.events, rows.length ? table(['time', 'type', 'reason', 'message', ''], rows) : h('p', { class: 'muted' }, 'No events.'));
  }

  rolloutPanel(r) {
    this.rollout.hidden = !r;
    if (!r) return;
    const hist = (r.history || []).map((s) => [String(s.step), `${s.weight}%`, s.outcome, s.reason, fmtTime(s.ended)]);
    fill(this.rollout, h('h2', {}, 'Rollout'),
      h('p', {}, `${r.from} → ${r.to}: ${r.phase}${r.active ? ' (active)' : ''}, step ${r.step} at ${r.weight}%${r.reason ? ' — ' + r.reason : ''}`),
      hist.length ? table(['step', 'weight', 'outcome', 'measurement', 'ended'], hist) : null);
  }

  shadowPanel(s) {
    this.shadow.hidden = !s;
    if (!s) return;
    const v = s.verdict || {};
    fill(this.shadow, h('h2', {}, 'Shadow'),
      h('p', {}, `${s.model}, ${s.percent}% of requests mirrored${s.active ? '' : ' (ended)'}; ${fmtNum(s.requests || 0, 0)} compared`),
      h('pre', { class: 'json' }, JSON.stringify(v, null, 2)));
  }

  trafficPanel(tracks) {
    this.traffic.hidden = tracks.length === 0;
    if (!tracks.length) return;
    fill(this.traffic, h('h2', {}, 'Traffic split'), table(['track', 'model', 'weight', 'ready/replicas'],
      tracks.map((t) => [t.tag || 'primary', t.modelVersion || t.model || '', `${t.weight ?? ''}%`, `${t.readyReplicas || 0}/${t.replicas || 0}`])));
  }

  poolPanel(p) {
    this.pool.hidden = !p;
    if (!p) return;
    fill(this.pool, h('h2', {}, 'Pool placement'),
      h('p', {}, `in pool `, h('a', { href: '#/pools' }, p.pool), `: loaded on ${(p.replicas || []).join(', ') || 'no replica (cold)'}`,
        p.bytes ? `, ${fmtNum(p.bytes / 1048576, 1)} MiB` : '', p.quarantine ? h('span', { class: 'error' }, ` quarantined: ${p.quarantine}`) : ''));
  }

  driftPanel(d) {
    this.drift.hidden = !d;
    if (!d) return;
    // GET …/drift: per version its window's scores against the version's
    // reference profile (internal/monitor).
    const versions = d.versions || [];
    const status = (s) => (typeof s === 'number' ? ['unknown', 'ok', 'warn', 'drift'][s] || String(s) : String(s || ''));
    const v = versions[0];
    const feats = v ? v.features || [] : [];
    this.driftEl.hidden = feats.length === 0;
    if (feats.length) {
      const u = barChart('drift', this.driftEl, `PSI by feature, ${v.version} (${fmtNum(v.rows || 0, 0)} rows in the window)`, [{ label: 'psi' }], 'count', 'feature');
      u.setNames(feats.map((f) => f.feature));
      u.setData([feats.map((_, i) => i), feats.map((f) => f.psi ?? null)]);
    } else {
      destroy('drift');
    }
    if (!versions.length) {
      fill(this.driftBody, h('p', { class: 'muted' }, 'No version of this deployment has a reference profile, or it logs no predictions: give a version a reference profile and turn on prediction logging for this deployment to see drift here.'));
      return;
    }
    fill(this.driftBody, versions.map((ver) => [
      h('h3', {}, `${ver.version}: ${status(ver.status)}`, h('span', { class: 'muted' }, ` against a profile of ${fmtNum(ver.profileRows || 0, 0)} rows`)),
      table(['feature', 'kind', 'psi', 'ks', 'mean shift (sd)', 'chi² p', 'status'], (ver.features || []).map((f) => [
        f.feature + (f.output ? ' (output)' : ''), String(f.kind ?? ''), fmtNum(f.psi, 3), f.ks ? fmtNum(f.ks, 3) : '–',
        f.mean_shift ? fmtNum(f.mean_shift, 2) : '–', f.chi2_p ? fmtNum(f.chi2_p, 3) : '–',
        h('span', { class: status(f.status) === 'drift' ? 'error' : '' }, status(f.status))]))]));
  }

  costPanel(c) {
    if (!c) { fill(this.cost, h('p', { class: 'muted' }, 'No cost record on this server.')); return; }
    fill(this.cost, h('dl', { class: 'facts' },
      h('dt', {}, 'used'), h('dd', {}, fmtSeconds(c.replicaSeconds) + ' of replica time'),
      h('dt', {}, 'always-on at peak'), h('dd', {}, `${fmtSeconds(c.alwaysOnSeconds)} (${c.peakReplicas} replicas)`),
      h('dt', {}, 'share of always-on'), h('dd', {}, h('meter', { min: 0, max: 1, value: c.reduction || 0 }), ` ${fmtNum((c.reduction || 0) * 100, 1)}%`),
      c.partial ? [h('dt', {}, 'since'), h('dd', {}, `recorded from ${fmtTime(c.recorded)}`)] : null));
  }
}

// Pools and placement, tenants and limits, jobs against their deadlines,
// and cost against always-on.
import { get, enc } from './api.js';
import { h, fill, table, fmtSeconds, fmtTime, fmtNum } from './dom.js';
import { barChart, destroy } from './charts.js';

const mib = (b) => fmtNum((b || 0) / 1048576, 1) + ' MiB';

function unavailable(el, what) {
  fill(el, h('p', { class: 'muted' }, `This server has no ${what} API.`));
}

export class Pools {
  constructor(main) {
    this.body = h('div', { id: 'pools' });
    this.chartEl = h('div', { class: 'chart' });
    fill(main, h('h1', {}, 'Pools'), h('p', { class: 'muted' }, 'Multi-model pools: each replica holds many models, placed by measured memory.'),
      this.chartEl, this.body);
  }

  async refresh() {
    const list = await get('/v1/pools', { optional: true });
    if (!list) { unavailable(this.body, 'pools'); return; }
    const reps = [];
    const parts = list.items.map((p) => {
      const st = p.status || {};
      for (const r of st.replicaStatuses || []) reps.push({ name: `${p.name}/${r.slot || r.id}`, used: r.usedBytes, budget: r.budgetBytes });
      return h('section', { class: 'panel' },
        h('h2', {}, p.name),
        h('p', {}, `${p.spec.engine}, budget ${p.spec.memoryBudget} per replica; ${st.readyReplicas || 0}/${st.replicas || 0} replicas ready (desired ${st.desiredReplicas || 0}); ${st.loaded || 0} of ${st.models || 0} models loaded`,
          st.failure ? h('span', { class: 'error' }, ' — ' + st.failure) : (st.reason ? ' — ' + st.reason : '')),
        (st.replicaStatuses || []).length ? table(['replica', 'state', 'models', 'memory used', ''],
          st.replicaStatuses.map((r) => [r.slot || r.id, r.state, String(r.models), `${mib(r.usedBytes)} of ${mib(r.budgetBytes)}`,
            h('meter', { min: 0, max: r.budgetBytes || 1, value: r.usedBytes || 0, high: (r.budgetBytes || 1) * 0.9 })])) : null,
        (st.quarantined || []).length ? table(['quarantined model', 'why'], st.quarantined.map((q) => [q.model, q.reason])) : null);
    });
    this.chartEl.hidden = reps.length === 0;
    if (!reps.length) destroy('pool-memory');
    const u = !reps.length ? null : barChart('pool-memory', this.chartEl, 'memory per pool replica (MiB)', [{ label: 'budget', size: 0.7, max: 60, color: '#94a3b8' }, { label: 'used', size: 0.35, max: 30 }], 'count', 'replica');
    if (u) {
      u.setNames(reps.map((r) => r.name));
      u.setData([reps.map((_, i) => i), reps.map((r) => r.budget / 1048576), reps.map((r) => r.used / 1048576)]);
    }
    fill(this.body, parts.length ? parts : h('p', { class: 'muted' }, 'No pools.'));
  }
}

export class Tenants {
  constructor(main) {
    this.body = h('div', { id: 'limits' });
    fill(main, h('h1', {}, 'Tenants & limits'),
      h('p', { class: 'muted' }, 'Per-tenant request rates, concurrency caps and fair-queue shares (ebb limits). Held requests per deployment are in each deployment\'s "in flight" chart and in ebb_activator_queue_depth.'),
      this.body);
  }

  async refresh() {
    const list = await get('/v1/limits', { optional: true });
    if (!list) { unavailable(this.body, 'tenant limits'); return; }
    const rows = list.items.map((l) => [l.tenant, l.deployment || 'every deployment', l.rate ? `${fmtNum(l.rate)}/s` : '–',
      l.burst ? String(l.burst) : '–', l.concurrency ? String(l.concurrency) : '–', l.share ? String(l.share) : '–']);
    fill(this.body, rows.length ? table(['tenant', 'deployment', 'rate', 'burst', 'concurrency', 'share'], rows) : h('p', { class: 'muted' }, 'No tenant limits: every tenant is unlimited.'));
  }
}

export class Jobs {
  constructor(main) {
    this.body = h('div', { id: 'jobs' });
    fill(main, h('h1', {}, 'Jobs'), h('p', { class: 'muted' }, 'Batch inference jobs: progress, and the expected end against the deadline.'), this.body);
  }

  async refresh() {
    const list = await get('/v1/jobs', { optional: true });
    if (!list) { unavailable(this.body, 'jobs'); return; }
    const now = Date.now();
    const rows = list.items.slice().reverse().map((j) => {
      const st = j.status || {};
      const deadline = Date.parse(j.spec.deadline);
      const eta = st.eta ? Date.parse(st.eta) : NaN;
      const done = ['Succeeded', 'Failed', 'Cancelled', 'Refused'].includes(st.phase);
      let risk = '';
      if (!done && eta > deadline) risk = `late by ${fmtSeconds((eta - deadline) / 1000)}`;
      else if (!done && now > deadline) risk = 'past its deadline';
      else if (!done && st.eta) risk = `${fmtSeconds((deadline - eta) / 1000)} to spare`;
      const lease = j.spec.lease || {};
      return [
        j.name, st.phase || '',
        h('span', {}, h('progress', { max: st.rowsTotal || 1, value: st.rowsDone || 0 }), ` ${fmtNum(st.rowsDone || 0, 0)} / ${fmtNum(st.rowsTotal || 0, 0)} rows`),
        st.rowsPerSecond ? `${fmtNum(st.rowsPerSecond, 1)}/s` : '–',
        fmtTime(st.eta), fmtTime(j.spec.deadline),
        h('span', { class: risk.startsWith('late') || risk.startsWith('past') ? 'error' : '' }, risk),
        `${st.replicas || 0}`,
        lease.maxReplicaHours ? h('span', {}, h('meter', { min: 0, max: lease.maxReplicaHours, value: st.replicaHours || 0, high: lease.maxReplicaHours * 0.9 }), ` ${fmtNum(st.replicaHours || 0)} of ${fmtNum(lease.maxReplicaHours)} h`) : fmtNum(st.replicaHours || 0),
        st.message || '',
      ];
    });
    fill(this.body, rows.length ? table(['job', 'phase', 'progress', 'rate', 'expected end', 'deadline', 'deadline risk', 'replicas', 'lease (replica-hours)', 'message'], rows) :
      h('p', { class: 'muted' }, 'No jobs.'));
  }
}

export class Cost {
  constructor(main, params) {
    this.since = params.get('since') || '7d';
    const pick = h('select', { id: 'since', 'aria-label': 'period' }, ['1h', '24h', '7d', '30d'].map((p) => h('option', { value: p, selected: p === this.since }, p)));
    pick.addEventListener('change', () => { this.since = pick.value; history.replaceState(null, '', '#/cost?since=' + enc(this.since)); this.refresh(); });
    this.chartEl = h('div', { class: 'chart' });
    this.body = h('div', { id: 'cost' });
    fill(main, h('h1', {}, 'Cost vs always-on'),
      h('p', { class: 'muted' }, 'Replica time used against keeping the peak number of replicas on for the whole period. Period: ', pick),
      this.chartEl, this.body);
  }

  async refresh() {
    const list = await get('/v1/cost?since=' + enc(this.since), { optional: true });
    if (!list) { unavailable(this.body, 'cost'); return; }
    const items = list.items.slice().sort((a, b) => b.alwaysOnSeconds - a.alwaysOnSeconds);
    const top = items.slice(0, 25);
    this.chartEl.hidden = top.length === 0;
    if (!top.length) destroy('cost');
    const u = !top.length ? null : barChart('cost', this.chartEl, `replica-hours, top ${top.length} by always-on`, [
      { label: 'always-on', size: 0.7, max: 60, color: '#94a3b8' }, { label: 'used', size: 0.35, max: 30 }], 'count', 'deployment');
    if (u) {
      u.setNames(top.map((c) => c.deployment));
      u.setData([top.map((_, i) => i), top.map((c) => c.alwaysOnSeconds / 3600), top.map((c) => c.replicaSeconds / 3600)]);
    }
    const t = list.total || {};
    fill(this.body,
      h('p', { id: 'cost-total' }, `All deployments: ${fmtSeconds(t.replicaSeconds || 0)} of replica time used, against ${fmtSeconds(t.alwaysOnSeconds || 0)} always-on (${fmtNum((t.reduction || 0) * 100, 1)}%).`),
      table(['deployment', 'used', 'always-on', 'peak replicas', 'share', ''], items.map((c) => [
        h('a', { href: '#/deployments/' + enc(c.deployment) }, c.deployment), fmtSeconds(c.replicaSeconds), fmtSeconds(c.alwaysOnSeconds),
        String(c.peakReplicas), h('meter', { min: 0, max: 1, value: c.reduction || 0 }), c.partial ? `since ${fmtTime(c.recorded)}` : ''])));
  }
}

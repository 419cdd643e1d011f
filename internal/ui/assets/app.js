// The dashboard: a hash router over the views, the sign-in form, and the
// poll that refreshes the view every 2 s while the tab is visible.
import { get, token, setToken, forgetToken, APIError } from './api.js';
import { h, fill } from './dom.js';
import { destroyAll } from './charts.js';
import { DeploymentList, DeploymentDetail } from './deployments.js';
import { Pools, Tenants, Jobs, Cost } from './others.js';

const pollEvery = 2000;
const $ = (id) => document.getElementById(id);

let view = null;
let busy = false;
let timer = 0;

function route() {
  const [path, query] = (location.hash.replace(/^#/, '') || '/deployments').split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  destroyAll();
  const main = $('main');
  let active = parts[0] || 'deployments';
  switch (active) {
    case 'deployments':
      view = parts[1] ? new DeploymentDetail(main, parts[1]) : new DeploymentList(main, params);
      break;
    case 'pools': view = new Pools(main); break;
    case 'tenants': view = new Tenants(main); break;
    case 'jobs': view = new Jobs(main); break;
    case 'cost': view = new Cost(main, params); break;
    default:
      active = '';
      view = null;
      fill(main, h('p', {}, 'No such page: ', h('a', { href: '#/deployments' }, 'deployments')));
  }
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.view === active);
  poll();
}

// poll refreshes the view now and then every pollEvery; one refresh at a
// time, none while the tab is hidden.
async function poll() {
  clearTimeout(timer);
  timer = setTimeout(poll, pollEvery);
  if (busy || !view || document.hidden) return;
  busy = true;
  const v = view;
  try {
    await v.refresh();
    if (v === view) banner('');
    $('live').classList.remove('stale');
    document.body.dataset.refreshed = String(Date.now());
  } catch (e) {
    $('live').classList.add('stale');
    if (e instanceof APIError && e.status === 401) {
      showLogin('The server refused the token (' + e.message + '): sign in with a valid one.');
    } else if (e instanceof APIError && e.status === 403) {
      banner('This token may not read this page: ' + e.message + ' (a token with the read scope can).');
    } else if (e instanceof APIError && e.status === 404 && e.code.endsWith('not_found')) {
      banner(e.message);
    } else {
      banner(String(e.message || e));
    }
  } finally {
    busy = false;
  }
}

function banner(msg) {
  const b = $('banner');
  b.hidden = !msg;
  b.textContent = msg;
}

function showLogin(msg) {
  clearTimeout(timer);
  view = null;
  destroyAll();
  fill($('main'));
  $('login').hidden = false;
  $('logout').hidden = true;
  const err = $('login-error');
  err.hidden = !msg;
  err.textContent = msg || '';
  $('token').focus();
}

// start checks the token (or that none is needed) against /v1/version,
// then shows the dashboard.
async function start() {
  try {
    const v = await get('/v1/version');
    $('server').textContent = `${v.home === 'cluster' ? 'cluster' : 'ebb up'} ${v.version}`;
  } catch (e) {
    if (e instanceof APIError && e.status === 401) {
      showLogin(token() ? 'The server refused the saved token: sign in again.' : '');
      return;
    }
    banner(String(e.message || e));
  }
  $('login').hidden = true;
  $('logout').hidden = !token();
  route();
}

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  setToken($('token').value);
  $('token').value = '';
  start();
});
$('logout').addEventListener('click', () => { forgetToken(); showLogin('Token forgotten.'); });
window.addEventListener('hashchange', () => { if ($('login').hidden) route(); });
document.addEventListener('visibilitychange', () => { if (!document.hidden && view) poll(); });
start();

// The operator dashboard: every plugin with its state, budget and counters,
// refreshed every second from the admin API; enable / disable / reload.
// The admin token comes from `#token=…` (what `airlock serve` prints on the
// embedded defaults; a fragment never reaches a server or its logs) or the
// form, and is kept for this tab only.

import './page.css'
import { apiBase, bearer, bytes, count, el, fetchJson, when } from './common.js'

const TOKEN_STORAGE = 'airlock.adminToken'
const POLL_MS = 1000

const api = apiBase()
const tokenForm = document.getElementById('token-form')
const tokenInput = document.getElementById('token')
const status = document.getElementById('status')
const plugins = document.getElementById('plugins')
const reloadButton = document.getElementById('reload')
const actionResult = document.getElementById('action-result')
document.getElementById('api-origin').textContent = api

const fromFragment = new URLSearchParams(window.location.hash.slice(1)).get('token')
if (fromFragment) {
  sessionStorage.setItem(TOKEN_STORAGE, fromFragment)
  history.replaceState(null, '', window.location.pathname + window.location.search)
}
tokenInput.value = sessionStorage.getItem(TOKEN_STORAGE) ?? ''
tokenForm.addEventListener('submit', (event) => {
  event.preventDefault()
  sessionStorage.setItem(TOKEN_STORAGE, tokenInput.value.trim())
  refresh()
})
const authorization = () => bearer(sessionStorage.getItem(TOKEN_STORAGE) ?? '')

reloadButton.addEventListener('click', async () => {
  await act('reload', () => fetchJson(`${api}/admin/reload`, { method: 'POST', headers: authorization() }),
    (r) => `reloaded: ${r.plugins.join(', ') || 'no plugins'}${r.restart_needed.length ? `; restart needed for ${r.restart_needed.join(', ')}` : ''}`)
})

async function setState(name, action) {
  const url = `${api}/admin/plugins/${encodeURIComponent(name)}/${action}`
  await act(`${action} ${name}`, () => fetchJson(url, { method: 'POST', headers: authorization() }),
    (r) => `${r.plugin} is now ${r.state}`)
}

async function act(what, call, describe) {
  actionResult.className = 'muted'
  actionResult.textContent = `${what}…`
  try {
    actionResult.textContent = describe(await call())
    actionResult.className = 'ok'
  } catch (err) {
    actionResult.textContent = `${what} failed: ${err.message}`
    actionResult.className = 'error'
  }
  await refresh()
}

let timer
async function refresh() {
  clearTimeout(timer)
  try {
    const body = await fetchJson(`${api}/admin/plugins`, { headers: authorization() })
    render(body.plugins)
    status.className = 'ok'
    status.textContent = `live · updated ${new Date().toLocaleTimeString()}`
    document.body.dataset.live = 'true'
  } catch (err) {
    status.className = 'error'
    status.textContent = err.status === 401
      ? 'Enter the admin token (AIRLOCK_ADMIN_TOKEN; on the embedded defaults `airlock serve` prints a link with it).'
      : err.status === 403
        ? 'The admin API is disabled: set admin.token or AIRLOCK_ADMIN_TOKEN.'
        : `Cannot reach the admin API: ${err.message}`
    document.body.dataset.live = 'false'
  }
  timer = setTimeout(refresh, POLL_MS)
}

function render(list) {
  plugins.replaceChildren(...list.map(row))
}

function row(p) {
  const c = p.counters
  const action = p.state === 'active'
    ? el('button', { class: 'disable', onclick: () => setState(p.name, 'disable') }, 'Disable')
    : el('button', { class: 'enable', onclick: () => setState(p.name, 'enable') }, 'Enable')
  return el('tr', { 'data-plugin': p.name, 'data-state': p.state },
    el('td', {}, el('strong', {}, p.name), el('div', { class: 'muted' }, `${p.hook} · ${p.on_failure}`)),
    el('td', {}, el('span', { class: `badge ${p.state}` }, p.state),
      p.reason ? el('div', { class: 'reason' }, p.reason) : null),
    el('td', { class: 'budget' }, dl([
      ['fuel', count(p.budget.fuel)],
      ['wall', `${p.budget.timeout_ms} ms`],
      ['memory', bytes(p.budget.memory_bytes)],
      ['cache calls', p.budget.cache_calls],
      ['cache bytes', bytes(p.budget.cache_write_bytes)],
      ['read', bytes(p.budget.read_bytes)],
      ['output', bytes(p.budget.output_bytes)],
      ['slots', `${c.running}/${p.containment.max_concurrency}`],
    ])),
    el('td', { class: 'outcomes' }, dl([
      ...Object.entries(c.outcomes),
      ['refused', c.refused],
    ])),
    el('td', { class: 'stops' }, Object.keys(c.budget_stops).length === 0
      ? el('span', { class: 'muted' }, 'none')
      : dl(Object.entries(c.budget_stops))),
    el('td', { class: 'usage' }, dl([
      ['fuel', count(c.fuel)],
      ...Object.entries(c.cache_ops).filter(([, n]) => n > 0).map(([op, n]) => [`cache ${op}`, n]),
    ])),
    el('td', { class: 'latency' }, c.latency_ms.samples === 0
      ? el('span', { class: 'muted' }, '–')
      : dl([['p50', `${c.latency_ms.p50.toFixed(1)} ms`], ['p99', `${c.latency_ms.p99.toFixed(1)} ms`]])),
    el('td', { class: 'violation' }, p.last_violation
      ? [el('div', {}, when(p.last_violation.at)),
          p.last_violation.limit ? el('span', { class: 'limit' }, p.last_violation.limit) : null,
          el('div', { class: 'reason' }, p.last_violation.reason)]
      : el('span', { class: 'muted' }, 'none')),
    el('td', {}, action),
  )
}

function dl(pairs) {
  return el('dl', {}, pairs.map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]))
}

refresh()

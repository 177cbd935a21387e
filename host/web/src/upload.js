// The upload page: Uppy's Dashboard uploading over tus (resumable: a dropped
// connection is retried and resumed where it stopped, also after a reload of
// the page), then each upload's record as the API returns it.

import Uppy from '@uppy/core'
import Dashboard from '@uppy/dashboard'
import Tus from '@uppy/tus'
import '@uppy/core/css/style.min.css'
import '@uppy/dashboard/css/style.min.css'
import './page.css'
import { apiBase, bearer, bytes, el, fetchJson, parseError, when } from './common.js'

const KEY_STORAGE = 'airlock.apiKey'
// How long the page waits for post-store plugins (the thumbnail).
const PENDING_DEADLINE_MS = 60_000

const api = apiBase()
const keyInput = document.getElementById('api-key')
const results = document.getElementById('results')
const offline = document.getElementById('offline')
// file id → its card in the results.
const cards = new Map()
document.getElementById('api-origin').textContent = api
keyInput.value = localStorage.getItem(KEY_STORAGE) ?? ''
keyInput.addEventListener('change', () => localStorage.setItem(KEY_STORAGE, keyInput.value.trim()))
const authorization = () => bearer(keyInput.value.trim())

const uppy = new Uppy({ autoProceed: true })
  .use(Dashboard, {
    inline: true,
    target: '#uppy',
    width: '100%',
    height: 360,
    showProgressDetails: true,
    proudlyDisplayPoweredByUppy: false,
    note: 'Files go through this service\'s plugins before they are stored.',
  })
  .use(Tus, {
    endpoint: `${api}/v1/tus`,
    headers: () => authorization(),
    // Keeps retrying through a network drop, then resumes at the offset
    // the server has (HEAD), not from the start.
    retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
    removeFingerprintOnSuccess: true,
    // tus metadata: Airlock names and types the upload by these two.
    allowedMetaFields: ['filename', 'filetype'],
  })

uppy.on('file-added', (file) => {
  uppy.setFileMeta(file.id, { filename: file.name, filetype: file.type || 'application/octet-stream' })
})

uppy.on('is-offline', () => { offline.hidden = false })
uppy.on('back-online', () => { offline.hidden = true })

uppy.on('upload-progress', (file, progress) => {
  const card = cardFor(file)
  card.dataset.sent = String(progress.bytesUploaded)
  card.querySelector('.progress').textContent =
    `${bytes(progress.bytesUploaded)} of ${bytes(progress.bytesTotal ?? file.size)} sent`
})

uppy.on('upload-success', (file, response) => {
  const id = response.uploadURL?.split('/').pop()
  const card = cardFor(file)
  setState(card, 'stored')
  if (!id) {
    card.append(el('p', { class: 'error' }, 'The server did not say where the upload went.'))
    return
  }
  showRecord(card, id).catch((err) => {
    card.append(el('p', { class: 'error' }, `Cannot read the record: ${err.message}`))
  })
})

uppy.on('upload-error', (file, err, response) => {
  const xhr = response?.body?.xhr
  const card = cardFor(file ?? { id: 'unknown', name: 'upload' })
  setState(card, 'failed')
  const error = xhr ? parseError(xhr.status, xhr.responseText) : null
  if (error?.code === 'rejected') {
    // The message names the plugin too; it is shown apart.
    const reason = error.message.replace(/^rejected by plugin `[^`]*`: /, '')
    card.append(
      el('p', { class: 'error rejected' },
        'Rejected by plugin ', el('code', {}, error.plugin ?? '?'), ': ', reason),
    )
  } else {
    card.append(el('p', { class: 'error' }, error?.message ?? err?.message ?? 'Upload failed'))
  }
})

// A file retried from the Dashboard starts again with a fresh card.
uppy.on('upload-retry', (file) => {
  const id = typeof file === 'string' ? file : file?.id
  cards.get(id)?.remove()
  cards.delete(id)
})

/** The card of a file, made at its first progress. */
function cardFor(file) {
  let card = cards.get(file.id)
  if (!card) {
    card = el('article', { class: 'card uploading', 'data-file': file.name },
      el('h3', {}, file.name, el('span', { class: 'badge uploading' }, 'uploading')),
      el('p', { class: 'progress muted' }))
    cards.set(file.id, card)
    results.prepend(card)
  }
  return card
}

function setState(card, state) {
  card.classList.replace('uploading', state)
  const badge = card.querySelector('.badge')
  badge.className = `badge ${state}`
  badge.textContent = state
  card.querySelector('.progress')?.remove()
}

/** Fetches the record, waiting while post-store plugins are pending. */
async function showRecord(card, id) {
  const url = `${api}/v1/uploads/${encodeURIComponent(id)}`
  const deadline = Date.now() + PENDING_DEADLINE_MS
  let record = await fetchJson(url, { headers: authorization() })
  const body = el('div', { class: 'record' })
  card.append(body)
  renderRecord(body, record)
  while ((record.pending?.length ?? 0) > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 500))
    record = await fetchJson(url, { headers: authorization() })
    renderRecord(body, record)
  }
  card.dataset.id = id
  card.classList.add('settled')
}

function renderRecord(body, record) {
  const rows = [
    ['id', el('code', {}, record.id)],
    ['detected type', el('code', { class: 'content-type' }, record.content_type)],
    ['size', bytes(record.size)],
    ['sha256', el('code', { class: 'hash' }, record.sha256)],
    ['received', when(record.created_at)],
  ]
  const metadata = Object.entries(record.metadata ?? {})
  body.replaceChildren(
    el('table', { class: 'facts' }, rows.map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', {}, v)))),
    el('h4', {}, 'Metadata'),
    metadata.length === 0
      ? el('p', { class: 'muted' }, 'none')
      : el('table', { class: 'metadata' },
          metadata.map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', {}, v)))),
    el('h4', {}, 'Derived'),
    derivedList(record),
    ...((record.skipped?.length ?? 0) > 0 ? [skippedList(record.skipped)] : []),
  )
}

function derivedList(record) {
  const items = record.derived ?? []
  const pending = record.pending ?? []
  if (items.length === 0 && pending.length === 0) return el('p', { class: 'muted' }, 'none')
  return el('div', { class: 'derived' },
    items.map((d) => {
      const figure = el('figure', { 'data-name': d.name },
        el('figcaption', {}, `${d.name} · ${d.content_type} · ${bytes(d.size)} · by ${d.plugin}`))
      if (d.content_type.startsWith('image/')) {
        const img = el('img', { alt: d.name, class: 'thumbnail' })
        figure.prepend(img)
        loadImage(img, `${api}/v1/uploads/${encodeURIComponent(record.id)}/derived/${encodeURIComponent(d.name)}`)
      }
      return figure
    }),
    pending.map((p) => el('p', { class: 'muted pending' }, `${p}: running…`)),
  )
}

function skippedList(skipped) {
  return el('div', { class: 'skipped' },
    el('h4', {}, 'Plugins that did not finish'),
    el('ul', {}, skipped.map((s) => el('li', {},
      el('code', {}, s.plugin), ` (${s.hook})`,
      s.limit ? el('span', { class: 'limit' }, `stopped at its ${s.limit} budget`) : null,
      ': ', s.reason))))
}

// With API keys an <img src> cannot authenticate: fetch, then show a blob.
async function loadImage(img, url) {
  try {
    const response = await fetch(url, { headers: authorization() })
    if (!response.ok) throw parseError(response.status, await response.text())
    img.src = URL.createObjectURL(await response.blob())
    img.addEventListener('load', () => img.classList.add('loaded'), { once: true })
  } catch (err) {
    img.replaceWith(el('p', { class: 'error' }, `Cannot load ${img.alt}: ${err.message}`))
  }
}

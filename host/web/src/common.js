// Helpers shared by the upload page and the operator dashboard.

/**
 * The API's origin: `?api=https://…` when the page is served apart from the
 * API (it must then allow this page's origin in `[server.cors]`), else the
 * page's own origin.
 */
export function apiBase() {
  const given = new URLSearchParams(window.location.search).get('api')
  if (!given) return window.location.origin
  const url = new URL(given, window.location.href)
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`?api= must be an http(s) URL, not ${url.protocol}`)
  }
  return url.origin
}

/**
 * Builds an element: `el('td', {class: 'n'}, 'text', child)`. Text is set
 * as text, never as HTML: plugin names, reasons and metadata come from
 * untrusted plugins and uploaders.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value)
    else node.setAttribute(name, value === true ? '' : String(value))
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue
    node.append(child instanceof Node ? child : document.createTextNode(String(child)))
  }
  return node
}

/** An error answered by the API, with its typed `{"error": {...}}` body. */
export class ApiError extends Error {
  constructor(status, body) {
    const error = body && typeof body === 'object' ? body.error : undefined
    super(error?.message ?? `HTTP ${status}`)
    this.status = status
    this.code = error?.code ?? 'http_error'
    this.plugin = error?.plugin
  }
}

/** The typed error in a response body, if it is one. */
export function parseError(status, text) {
  try {
    return new ApiError(status, JSON.parse(text))
  } catch {
    return new ApiError(status, undefined)
  }
}

/** `fetch` that returns parsed JSON or throws an {@link ApiError}. */
export async function fetchJson(url, init = {}) {
  const response = await fetch(url, init)
  const text = await response.text()
  if (!response.ok) throw parseError(response.status, text)
  return text ? JSON.parse(text) : null
}

/** `Authorization: Bearer` for a key or token, none for an empty one. */
export function bearer(secret) {
  return secret ? { Authorization: `Bearer ${secret}` } : {}
}

/** 1536 → "1.5 KiB". */
export function bytes(n) {
  if (typeof n !== 'number') return '–'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i += 1
  }
  return `${i === 0 || Number.isInteger(n) ? n : n.toFixed(1)} ${units[i]}`
}

/** 1234567 → "1.23 M". */
export function count(n) {
  if (typeof n !== 'number') return '–'
  for (const [scale, unit] of [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']]) {
    if (n >= scale) return `${(n / scale).toPrecision(3)} ${unit}`
  }
  return String(n)
}

/** Seconds since the epoch → local time. */
export function when(seconds) {
  return typeof seconds === 'number' ? new Date(seconds * 1000).toLocaleString() : '–'
}

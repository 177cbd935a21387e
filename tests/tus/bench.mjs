// The load tool of scripts/bench-tus.sh: the same code drives any tus 1.0
// server (Airlock, @tus/server), so the two can be compared side by side.
//
//   node tests/tus/bench.mjs '{"endpoint":URL,"mode":"small","file":PATH,"concurrency":16,"count":400,"headers":{...}}'
//       `count` uploads of the file, `concurrency` in flight, each created
//       with its data (creation-with-upload: one POST per upload when the
//       server takes the whole body); prints
//       {"uploadsPerSec":N,"p50ms":N,"p99ms":N,"errors":N}
//       Options: "warmup" uploads first, not counted (default: concurrency);
//       "client":"http" (default) or "tus-js-client"; "metadata":{...}.
//   node tests/tus/bench.mjs '{"endpoint":URL,"mode":"large","file":PATH,"chunkSize":8388608,"headers":{...}}'
//       one upload of the file: a POST, then one PATCH per chunkSize bytes
//       (default 8 MiB); prints {"mbPerSec":N,"seconds":N} (MB = 10^6
//       bytes, timed from the POST to the last PATCH's answer).
//       "client":"http" (default) or "tus-js-client".
// A failed large upload prints {"error":"..."} and exits 1. Progress and
// error details go to stderr. Every request loop is bounded by `count` or
// by the file's size.
//
// Why the default client is plain `http` and not tus-js-client (which
// "client":"tus-js-client" selects, to compare): the point is to measure the
// server, and tus-js-client costs the client too much CPU. Measured on this
// 2-core box against a do-nothing tus responder: small (180 KiB, 16 in
// flight) 1580 uploads/s with http, 740/s with tus-js-client; large
// (256 MiB, 8 MiB chunks) tus-js-client 160-300 MB/s (it pipes each chunk
// from a new 64 KiB-buffered fs stream through a Transform), this http loop
// 450-500 MB/s (the Node responder's limit: curl gets 600-700 MB/s). The
// disk's dd floor (1 GiB, bs=8M, fsync) is about 250 MB/s, and a server
// that does not fsync every chunk can beat it: tus-js-client would cap it. The
// requests are the ones tus-js-client sends: small is creation-with-upload
// (uploadDataDuringCreation), a POST with Tus-Resumable: 1.0.0,
// Upload-Length, Upload-Metadata, Content-Type: application/offset+octet-stream
// and the whole file as body (a 201 whose Upload-Offset is short of the
// length is finished with PATCHes); large is a POST with Upload-Length, then
// PATCHes of chunkSize bytes, each after the previous one's answer.
import fs from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import { performance } from 'node:perf_hooks'
import * as tus from 'tus-js-client'

const cfg = JSON.parse(process.argv[2] ?? '{}')
if (!cfg.endpoint || !cfg.file || !['small', 'large'].includes(cfg.mode)) {
  console.error('usage: node bench.mjs \'{"endpoint":URL,"mode":"small"|"large","file":PATH,...}\'')
  process.exit(2)
}
const headers = cfg.headers ?? {}
const metadata = cfg.metadata ?? { filename: cfg.file.split('/').pop(), filetype: 'application/octet-stream' }
const encodeMetadata = (m) =>
  Object.entries(m).map(([k, v]) => `${k} ${Buffer.from(String(v)).toString('base64')}`).join(',')

function percentile(sorted, p) {
  if (sorted.length === 0) return null
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)
  return sorted[Math.max(0, i)]
}
const round = (x, d = 2) => (x == null ? null : Number(x.toFixed(d)))

// --- small: plain http ------------------------------------------------------

function request(agent, method, url, reqHeaders, body) {
  const u = new URL(url)
  const mod = u.protocol === 'https:' ? https : http
  return new Promise((resolve, reject) => {
    const req = mod.request(u, { method, agent, headers: reqHeaders }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

function httpUploader(data, concurrency) {
  const agent = cfg.endpoint.startsWith('https:')
    ? new https.Agent({ keepAlive: true, maxSockets: concurrency })
    : new http.Agent({ keepAlive: true, maxSockets: concurrency })
  const meta = encodeMetadata(metadata)
  const base = { 'Tus-Resumable': '1.0.0', ...headers }
  return async function uploadOnce() {
    const res = await request(agent, 'POST', cfg.endpoint, {
      ...base,
      'Upload-Length': String(data.length),
      ...(meta ? { 'Upload-Metadata': meta } : {}),
      'Content-Type': 'application/offset+octet-stream',
      'Content-Length': String(data.length),
    }, data)
    if (res.status !== 201 || !res.headers.location) {
      throw new Error(`POST: ${res.status} ${res.body.slice(0, 200)}`)
    }
    const url = new URL(res.headers.location, cfg.endpoint).toString()
    let offset = Number.parseInt(res.headers['upload-offset'] ?? '0', 10)
    // Bounded: each PATCH must move the offset forward.
    while (offset < data.length) {
      const rest = data.subarray(offset)
      const p = await request(agent, 'PATCH', url, {
        ...base,
        'Upload-Offset': String(offset),
        'Content-Type': 'application/offset+octet-stream',
        'Content-Length': String(rest.length),
      }, rest)
      const next = Number.parseInt(p.headers['upload-offset'] ?? '', 10)
      if (p.status !== 204 && p.status !== 200) throw new Error(`PATCH: ${p.status} ${p.body.slice(0, 200)}`)
      if (!(next > offset)) throw new Error(`PATCH: Upload-Offset ${p.headers['upload-offset']} after ${offset}`)
      offset = next
    }
  }
}

// --- small: tus-js-client ---------------------------------------------------

function tusUploader(data) {
  return () =>
    new Promise((resolve, reject) => {
      const upload = new tus.Upload(data, {
        endpoint: cfg.endpoint,
        headers,
        metadata,
        uploadDataDuringCreation: true,
        storeFingerprintForResuming: false,
        retryDelays: null,
        onSuccess: resolve,
        onError: reject,
      })
      upload.start()
    })
}

async function small() {
  const data = fs.readFileSync(cfg.file)
  const concurrency = Math.max(1, cfg.concurrency ?? 16)
  const count = Math.max(1, cfg.count ?? 400)
  const warmup = Math.max(0, cfg.warmup ?? concurrency)
  const uploadOnce = cfg.client === 'tus-js-client' ? tusUploader(data) : httpUploader(data, concurrency)

  let errors = 0
  let firstError = null
  const latencies = []
  async function run(total, record) {
    let next = 0
    async function worker() {
      while (next < total) {
        next++
        const t0 = performance.now()
        try {
          await uploadOnce()
          if (record) latencies.push(performance.now() - t0)
        } catch (err) {
          if (record) errors++
          firstError ??= err
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker))
  }
  if (warmup > 0) await run(warmup, false)
  const t0 = performance.now()
  await run(count, true)
  const seconds = (performance.now() - t0) / 1000
  if (firstError) console.error(`bench: first error: ${firstError.message ?? firstError}`)
  latencies.sort((a, b) => a - b)
  return {
    uploadsPerSec: round(latencies.length / seconds, 1),
    p50ms: round(percentile(latencies, 50)),
    p99ms: round(percentile(latencies, 99)),
    errors,
  }
}

// --- large -------------------------------------------------------------------

// Plain http, the requests tus-js-client sends with chunkSize: POST with
// Upload-Length (no body), then one PATCH per chunk, each waiting for the
// previous one's Upload-Offset. Each chunk is read into one buffer and sent
// with one write.
async function largeHttp(size) {
  const chunkSize = cfg.chunkSize ?? 8 * 1024 * 1024
  const agent = cfg.endpoint.startsWith('https:') ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true })
  const base = { 'Tus-Resumable': '1.0.0', ...headers }
  const meta = encodeMetadata(metadata)
  const fd = fs.openSync(cfg.file, 'r')
  const buf = Buffer.allocUnsafe(Math.min(chunkSize, Math.max(size, 1)))
  try {
    const t0 = performance.now()
    const res = await request(agent, 'POST', cfg.endpoint, {
      ...base,
      'Upload-Length': String(size),
      ...(meta ? { 'Upload-Metadata': meta } : {}),
    }, null)
    if (res.status !== 201 || !res.headers.location) throw new Error(`POST: ${res.status} ${res.body.slice(0, 200)}`)
    const url = new URL(res.headers.location, cfg.endpoint).toString()
    let offset = 0
    let lastLog = t0
    while (offset < size) {
      const n = fs.readSync(fd, buf, 0, Math.min(buf.length, size - offset), offset)
      const p = await request(agent, 'PATCH', url, {
        ...base,
        'Upload-Offset': String(offset),
        'Content-Type': 'application/offset+octet-stream',
        'Content-Length': String(n),
      }, buf.subarray(0, n))
      const next = Number.parseInt(p.headers['upload-offset'] ?? '', 10)
      if (p.status !== 204 && p.status !== 200) throw new Error(`PATCH at ${offset}: ${p.status} ${p.body.slice(0, 200)}`)
      if (!(next > offset)) throw new Error(`PATCH: Upload-Offset ${p.headers['upload-offset']} after ${offset}`)
      offset = next
      const now = performance.now()
      if (now - lastLog > 5000) {
        lastLog = now
        console.error(`bench: ${(offset / 1e6).toFixed(0)} / ${(size / 1e6).toFixed(0)} MB`)
      }
    }
    return (performance.now() - t0) / 1000
  } finally {
    fs.closeSync(fd)
  }
}

function largeTus(size) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    let lastLog = t0
    const upload = new tus.Upload(fs.createReadStream(cfg.file), {
      endpoint: cfg.endpoint,
      headers,
      metadata,
      chunkSize: cfg.chunkSize ?? 8 * 1024 * 1024,
      storeFingerprintForResuming: false,
      retryDelays: null,
      onProgress(sent) {
        const now = performance.now()
        if (now - lastLog > 5000) {
          lastLog = now
          console.error(`bench: ${(sent / 1e6).toFixed(0)} / ${(size / 1e6).toFixed(0)} MB`)
        }
      },
      onSuccess: () => resolve((performance.now() - t0) / 1000),
      onError: reject,
    })
    upload.start()
  })
}

async function large() {
  const size = fs.statSync(cfg.file).size
  const seconds = cfg.client === 'tus-js-client' ? await largeTus(size) : await largeHttp(size)
  return { mbPerSec: round(size / 1e6 / seconds, 1), seconds: round(seconds, 3) }
}

try {
  const result = cfg.mode === 'small' ? await small() : await large()
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0))
} catch (err) {
  process.stdout.write(`${JSON.stringify({ error: String(err?.message ?? err) })}\n`, () => process.exit(1))
}

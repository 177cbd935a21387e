// A command-line driver of tus-js-client (the official tus client) in Node,
// for the integration tests: one upload per run, the outcome as one JSON line.
//
//   node tests/tus/client.mjs '{"endpoint":"http://127.0.0.1:PORT/v1/tus","file":"/path",...}'
//
// Keys of the one JSON argument (all but `file` optional):
//   endpoint                  creation URL (POST); may be absent with uploadUrl
//   file                      the file to upload
//   chunkSize                 bytes per PATCH (default: the whole file; needed
//                             finite with uploadLengthDeferred)
//   parallelUploads           > 1: that many partial uploads, then a final one
//                             (concatenation extension)
//   headers                   sent on every request, e.g. {"Authorization":"Bearer k"}
//   metadata                  Upload-Metadata of the upload (the final one if parallel)
//   uploadLengthDeferred      the file goes as a plain stream with no size:
//                             Upload-Defer-Length: 1, the length on the last PATCH
//   uploadDataDuringCreation  creation-with-upload: the first chunk in the POST
//   abortAfterBytes           abort once this many bytes were sent, always in
//                             the middle of a PATCH body: at the first progress
//                             event inside a PATCH at or past it (tus-js-client
//                             reports the first 64 KiB of each PATCH, then once
//                             per 100 ms), so maybe a PATCH later than the one
//                             that crossed it; bytesUploaded says where
//   uploadUrl                 resume this upload (HEAD, then PATCH from its
//                             offset). NB: if the HEAD gets a 4xx and endpoint
//                             is set too, tus-js-client quietly creates a new
//                             upload (another url); leave endpoint out to get
//                             the error instead
//   retryDelays               ms between retries (default [0,200,500]; null: none)
//   tusOptions                any further tus.Upload options, merged last
//   debug                     true: tus-js-client's log and every request's
//                             method, URL and headers go to stderr
// A deferred-length upload of an empty file stalls in tus-js-client 4.3.1
// (reported as an error, see beforeExit below).
//
// Prints exactly one line on stdout:
//   {"ok":true,"url":U,"bytesUploaded":N,"lastResponse":{"status":S,"headers":{...}}}
//       exit 0; headers of the last response, names lower-cased
//   {"ok":false,"aborted":true,"url":U,"bytesUploaded":N}
//       exit 0; N = bytes handed to the socket when it aborted (the server may
//       have kept fewer: resume with "uploadUrl":U to find out)
//   {"ok":false,"error":"...","status":S,"body":"..."}
//       exit 1 (2 for a bad argument); status and body only when the error
//       came with an HTTP response; also "url":U once the upload had one
// Fingerprints are not stored, so every run is independent.
import fs from 'node:fs'
import { Readable } from 'node:stream'
import * as tus from 'tus-js-client'

let finished = false
function finish(result, code) {
  if (finished) return
  finished = true
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(code))
}
// tus-js-client waits on events only: if none can come, Node would exit 0
// with nothing printed.
process.on('beforeExit', () => {
  finish({ ok: false, error: 'tus-js-client stalled: nothing left to wait for before the upload ended' }, 1)
})

// The file as a stream that tus-js-client cannot size. Not a plain
// fs.ReadStream (tus-js-client would stat it by path) nor one piped through a
// PassThrough: tus-js-client 4.3.1's StreamSource learns that a stream ended
// only from its 'end' event, and otherwise waits for 'readable' with a
// read(chunkSize) that returns null forever at EOF. Node emits 'end' only on
// a read after the last bytes, unless that read asked for more than was left;
// so with a size that is a multiple of chunkSize the upload stalls after its
// last byte. This stream ends with its last bytes and, once they are read,
// reads once more itself so that 'end' comes before tus-js-client looks: the
// PATCH carrying the last bytes also carries Upload-Length.
class SizelessFileStream extends Readable {
  constructor(path) {
    super({ highWaterMark: 256 * 1024 })
    this.fd = fs.openSync(path, 'r')
    this.size = fs.fstatSync(this.fd).size
    this.pos = 0
    this.eof = false
  }

  _read(want) {
    want = Math.min(want, this.size - this.pos)
    if (want <= 0) {
      this.eof = true
      this.push(null)
      return
    }
    const buf = Buffer.allocUnsafe(want)
    fs.read(this.fd, buf, 0, want, this.pos, (err, got) => {
      if (err) {
        this.destroy(err)
        return
      }
      this.pos += got
      if (got > 0) this.push(got < want ? buf.subarray(0, got) : buf)
      if (got === 0 || this.pos >= this.size) {
        this.eof = true
        this.push(null)
      }
    })
  }

  read(n) {
    const chunk = super.read(n)
    if (chunk !== null && this.eof && this.readableLength === 0) {
      process.nextTick(() => super.read(0))
    }
    return chunk
  }

  _destroy(err, cb) {
    fs.close(this.fd, () => cb(err))
  }
}

let cfg
try {
  cfg = JSON.parse(process.argv[2] ?? '')
  if (typeof cfg?.file !== 'string') throw new Error('"file" (a path) is required')
  if (!cfg.endpoint && !cfg.uploadUrl) throw new Error('"endpoint" or "uploadUrl" is required')
  if (cfg.abortAfterBytes != null && (cfg.parallelUploads ?? 1) > 1) {
    throw new Error('abortAfterBytes works with parallelUploads 1 only')
  }
} catch (err) {
  console.error('usage: node client.mjs \'{"endpoint":URL,"file":PATH,...}\'')
  finish({ ok: false, error: `bad argument: ${err.message}` }, 2)
}

if (cfg) {
  if (cfg.debug) {
    // tus-js-client logs with console.log: keep stdout for the result line.
    console.log = (...args) => console.error(...args)
    tus.enableDebugLog()
  }

  const deferred = Boolean(cfg.uploadLengthDeferred)
  // A fs.ReadStream is read by path (tus-js-client stats it for the size and
  // re-opens it at each chunk's offset, so resuming and retries work). For a
  // deferred length the input must be a stream with no size: tus-js-client
  // then buffers one chunk at a time and learns the length when the stream
  // ends, sending it as Upload-Length on that PATCH.
  const input = deferred ? new SizelessFileStream(cfg.file) : fs.createReadStream(cfg.file)
  const abortAfter = cfg.abortAfterBytes ?? null

  let upload = null
  let bytesSent = 0
  let aborted = false
  // The PATCH in flight, if any: its start offset.
  let patchStart = null
  let lastResponse = null

  const responseInfo = (res) => {
    const node = res?.getUnderlyingObject?.()
    return node ? { status: res.getStatus(), headers: { ...node.headers } } : null
  }

  const options = {
    endpoint: cfg.endpoint ?? null,
    uploadUrl: cfg.uploadUrl ?? null,
    chunkSize: cfg.chunkSize ?? Number.POSITIVE_INFINITY,
    parallelUploads: cfg.parallelUploads ?? 1,
    headers: cfg.headers ?? {},
    metadata: cfg.metadata ?? {},
    uploadLengthDeferred: deferred,
    uploadDataDuringCreation: Boolean(cfg.uploadDataDuringCreation),
    retryDelays: cfg.retryDelays === undefined ? [0, 200, 500] : cfg.retryDelays,
    storeFingerprintForResuming: false,
    removeFingerprintOnSuccess: false,
    onBeforeRequest(req) {
      const method = req.getMethod()
      const patch = method === 'PATCH' || (method === 'POST' && req.getHeader('X-HTTP-Method-Override') === 'PATCH')
      patchStart = patch ? Number(req.getHeader('Upload-Offset')) : null
      if (cfg.debug) {
        const hdrs = req._headers ?? {}
        console.error(`tus-client > ${method} ${req.getURL()} ${JSON.stringify(hdrs)}`)
      }
    },
    onAfterResponse(req, res) {
      patchStart = null
      lastResponse = responseInfo(res)
      if (cfg.debug) {
        console.error(`tus-client < ${lastResponse.status} ${JSON.stringify(lastResponse.headers)}`)
      }
    },
    onProgress(sent) {
      bytesSent = Math.max(bytesSent, sent)
      // tus-js-client reports progress before a PATCH is sent, after its
      // response, and (throttled to one per 100 ms, the first at once) while
      // its body is written. Aborting only on the last kind, once at least
      // one byte of this PATCH went out, makes the abort always cut a PATCH
      // body short, even when abortAfterBytes is a chunk boundary. The
      // creation POST (creation-with-upload) is never cut: its URL is unknown.
      if (
        abortAfter != null && !aborted && sent >= abortAfter &&
        patchStart != null && sent > patchStart && upload.url
      ) {
        aborted = true
        upload.abort()
        finish({ ok: false, aborted: true, url: upload.url, bytesUploaded: sent }, 0)
      }
    },
    onSuccess(payload) {
      if (aborted) return
      const info = responseInfo(payload?.lastResponse) ?? lastResponse
      finish({ ok: true, url: upload.url, bytesUploaded: bytesSent, lastResponse: info }, 0)
    },
    onError(err) {
      if (aborted) return
      const res = err?.originalResponse
      const out = { ok: false, error: String(err?.message ?? err) }
      if (res) {
        out.status = res.getStatus()
        out.body = res.getBody()
      }
      if (upload?.url) out.url = upload.url
      finish(out, 1)
    },
    ...(cfg.tusOptions ?? {}),
  }

  input.on('error', (err) => options.onError(err))
  upload = new tus.Upload(input, options)
  upload.start()
}

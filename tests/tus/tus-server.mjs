// The reference tus server: @tus/server with @tus/file-store, for
// scripts/bench-tus.sh (the side-by-side benchmark) and for checking the
// drivers in this directory against a full tus 1.0 implementation.
//
//   node tests/tus/tus-server.mjs DIR
//
// Serves tus at http://127.0.0.1:PORT/v1/tus (PORT picked by the OS) and
// prints `listening http://127.0.0.1:PORT` as its first stdout line. Uploads
// are stored in DIR as files named by upload id (plus `<id>.json` with the
// upload's length and metadata). Extensions: creation, creation-with-upload,
// creation-defer-length, termination, expiration; NOT concatenation nor
// checksum (@tus/file-store has neither). Stops on SIGTERM / SIGINT.
import { FileStore } from '@tus/file-store'
import { Server } from '@tus/server'

const directory = process.argv[2]
if (!directory) {
  console.error('usage: node tus-server.mjs DIR')
  process.exit(2)
}

const tus = new Server({
  path: '/v1/tus',
  datastore: new FileStore({ directory }),
})

const server = tus.listen({ host: '127.0.0.1', port: 0 }, () => {
  const { port } = server.address()
  process.stdout.write(`listening http://127.0.0.1:${port}\n`)
})
// Many keep-alive connections from the benchmark: no idle cut-off mid-run.
server.keepAliveTimeout = 60_000

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close()
    server.closeAllConnections()
    process.exit(0)
  })
}

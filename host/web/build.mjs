// Bundles the two pages with esbuild: node build.mjs SRC_DIR OUT_DIR
// (run by host/build.rs, which embeds OUT_DIR in the binary). Writes
// index.html, admin.html, upload.js, upload.css, admin.js, admin.css.
import { copyFile, mkdir } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'

const [src, out] = process.argv.slice(2)
if (!src || !out) {
  console.error('usage: node build.mjs SRC_DIR OUT_DIR')
  process.exit(2)
}
await mkdir(out, { recursive: true })
await esbuild.build({
  entryPoints: { upload: path.join(src, 'src/upload.js'), admin: path.join(src, 'src/admin.js') },
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2022'],
  outdir: out,
  // The sources may sit apart from this script's node_modules.
  nodePaths: [path.join(path.dirname(fileURLToPath(import.meta.url)), 'node_modules')],
  legalComments: 'none',
  logLevel: 'warning',
})
for (const page of ['index.html', 'admin.html']) {
  await copyFile(path.join(src, page), path.join(out, page))
}

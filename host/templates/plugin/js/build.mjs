// Builds dist/<name>.wasm from src/plugin.js with componentize-js, against
// wit/airlock.wit and the world in package.json ("airlock": { "world" }).
// `airlock plugin build` runs it (after `npm install` when needed), then
// checks the component as the service would.
//
// Every engine feature componentize-js can leave out is left out (stdio,
// random, clocks, http): Airlock refuses a component that imports anything
// outside airlock:plugin. componentize-js knows the imports only by their
// versioned names ('airlock:plugin/log@0.1.2'), so the sources import
// 'airlock:plugin/<interface>' and this script adds the WIT's version to a
// copy of src/.
//
// package.json lists @bytecodealliance/preview2-shim itself: componentize-js
// 0.23 imports it but declares it only as a dev dependency, so `npm ci` from
// a lock file would leave it out.
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { componentize } from '@bytecodealliance/componentize-js';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = JSON.parse(await readFile(join(here, 'package.json'), 'utf8'));
const world = pkg.airlock?.world;
if (world !== 'processor' && world !== 'extension') {
  throw new Error('package.json needs "airlock": { "world": "processor" } (or "extension")');
}
const witPath = join(here, 'wit', 'airlock.wit');
const wit = await readFile(witPath, 'utf8');
const version = /^\s*package\s+airlock:plugin@([0-9A-Za-z.+-]+)\s*;/m.exec(wit)?.[1];
if (!version) throw new Error(`${witPath}: no 'package airlock:plugin@<version>;' line`);

const work = await mkdtemp(join(tmpdir(), `${pkg.name}-`));
try {
  await cp(join(here, 'src'), work, { recursive: true });
  for (const entry of await readdir(work, { recursive: true })) {
    if (!/\.m?js$/.test(entry)) continue;
    const file = join(work, entry);
    const js = await readFile(file, 'utf8');
    await writeFile(
      file,
      js.replace(/(['"])airlock:plugin\/([a-z][a-z0-9-]*)\1/g, `$1airlock:plugin/$2@${version}$1`),
    );
  }
  const { component } = await componentize({
    sourcePath: join(work, 'plugin.js'),
    witPath,
    worldName: world,
    disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
  });
  const out = join(here, 'dist', `${pkg.name}.wasm`);
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, component);
} finally {
  await rm(work, { recursive: true, force: true });
}

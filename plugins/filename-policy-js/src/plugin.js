// filename-policy-js: an Airlock `processor` plugin written in JavaScript.
//
// Built with @bytecodealliance/componentize-js against
// wit/airlock.wit, world `processor` (see build.mjs / README.md).
//
// Policy on the client-supplied filename (never trusted):
//   - reject an empty name (or one made only of spaces/dots);
//   - reject path separators ('/' or '\\') and control characters
//     (C0, DEL, C1) and a few invisible/bidi format characters;
//   - reject names longer than 255 UTF-8 bytes;
//   - reject a "double extension" whose last extension is executable,
//     e.g. `invoice.pdf.exe`;
//   - otherwise accept, attaching [["filename-policy","ok"],["extension", ext]]
//     (ext is lowercase, "" when the name has none).
//
// How componentize-js 0.23.0 maps the WIT types (read from its generated
// bindings and checked by running the component; see README.md):
//   - exported interface `airlock:plugin/pre-store@<version>` -> an exported
//     object named `preStore` with a `process` method (it may be async);
//   - record `upload` -> plain object with camelCase fields
//     { id, client, filename, contentType, size: BigInt, metadata: [[k, v], ...] };
//   - `borrow<content>` -> an object with methods size() -> BigInt,
//     read(offset: BigInt, len: number) -> Uint8Array, sha256() -> string;
//     valid only during the call (the bindings drop the borrow on return);
//   - result<verdict, plugin-error>: return the verdict for `ok` (or an
//     explicit { tag: 'ok', val } / { tag: 'err', val }); throw for `err`.
//     The thrown value becomes the plugin-error record: its own `payload`
//     property if it has one, else the value itself, so it needs a string
//     `message` ({ message }, or an Error). Throwing a string, or returning
//     an unknown tag, traps;
//   - variant verdict -> { tag: 'accept', val: [[k, v], ...] } |
//     { tag: 'reject', val: 'reason' } |
//     { tag: 'replace', val: { bytes: Uint8Array, contentType, metadata } };
//   - enum log.level -> the case name as a string ('info', ...);
//   - imported functions returning result<T, cache.error> return T or throw
//     an Error whose `payload` is the error variant ({ tag: 'unavailable' });
//     option<T> is T or undefined.
//
// Built with every engine feature disabled, the component imports only
// airlock:plugin/*. Then: Date.now() is frozen at build time, Math.random()
// and crypto.getRandomValues() are deterministic (the same in every
// instance), console.* prints nothing, and setTimeout / performance.now()
// trap. Do not use them.

// componentize-js only knows the versioned specifier
// ('airlock:plugin/log@0.1.2'); build.mjs adds the version of
// wit/airlock.wit's package to every 'airlock:plugin/<iface>' import.
import { write as log } from 'airlock:plugin/log';

const EXECUTABLE = new Set([
  'exe', 'com', 'scr', 'bat', 'cmd', 'pif', 'cpl', 'msi', 'msp', 'jar',
  'js', 'jse', 'vbs', 'vbe', 'wsf', 'wsh', 'ps1', 'hta', 'lnk', 'reg',
  'dll', 'sh', 'app', 'apk', 'elf', 'bin', 'run',
]);

const MAX_NAME_BYTES = 255;

// Control characters (C0, DEL, C1) and invisible format characters that
// can disguise a name (zero-width, bidi overrides/isolates, BOM).
const FORBIDDEN = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/u;

function utf8Length(s) {
  let n = 0;
  for (const ch of s) {
    const cp = ch.codePointAt(0);
    n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  }
  return n;
}

/** Returns a rejection reason, or null if the name is acceptable. */
export function checkFilename(name) {
  if (name.length === 0 || /^[\s.]*$/u.test(name)) {
    return 'empty filename';
  }
  if (name.includes('/') || name.includes('\\')) {
    return 'filename must not contain a path separator';
  }
  if (FORBIDDEN.test(name)) {
    return 'filename must not contain control or invisible characters';
  }
  if (utf8Length(name) > MAX_NAME_BYTES) {
    return `filename longer than ${MAX_NAME_BYTES} bytes`;
  }
  const parts = name.toLowerCase().split('.').slice(1).map((p) => p.trim());
  const last = parts.length > 0 ? parts[parts.length - 1] : '';
  if (parts.length >= 2 && EXECUTABLE.has(last) && parts[parts.length - 2] !== '') {
    return `double extension ending in an executable type (.${parts.slice(-2).join('.')})`;
  }
  return null;
}

export function extensionOf(name) {
  const dot = name.lastIndexOf('.');
  return dot <= 0 ? '' : name.slice(dot + 1).toLowerCase();
}

/** An exception that the bindings turn into `err(plugin-error)`: `payload`
 * is what they send, whatever the realm of `Error`. */
function pluginError(message) {
  return Object.assign(new Error(message), { payload: { message } });
}

export const preStore = {
  process(upload, content) {
    if (typeof upload.filename !== 'string') {
      // Cannot happen with a conforming host: reported as `err(plugin-error)`.
      throw pluginError('upload.filename is not a string');
    }
    const reason = checkFilename(upload.filename);
    if (reason !== null) {
      log('info', `rejected ${JSON.stringify(upload.filename)}: ${reason}`);
      return { tag: 'reject', val: reason };
    }
    return {
      tag: 'accept',
      val: [
        ['filename-policy', 'ok'],
        ['extension', extensionOf(upload.filename)],
      ],
    };
  },
};

// {{name}}: an Airlock processor in JavaScript. It runs before every upload
// is stored and decides: accept it (with metadata), reject it, or replace
// its bytes. The contract is wit/airlock.wit, world `processor`.
//
// In JavaScript: `upload` is { id, client, filename, contentType,
// size (BigInt), metadata: [[key, value], ...] }; `content` has size(),
// read(offset BigInt, len) -> Uint8Array and sha256(). Return a verdict:
// { tag: 'accept', val: [[key, value], ...] }, { tag: 'reject', val: reason }
// or { tag: 'replace', val: { bytes, contentType, metadata } }; throw
// { message } to fail.
import { write as log } from 'airlock:plugin/log';

export const preStore = {
  process(upload, content) {
    log('info', `${upload.filename}: ${content.size()} bytes of ${upload.contentType}`);
    if (content.size() === 0n) {
      return { tag: 'reject', val: 'empty files are not accepted' };
    }
    return { tag: 'accept', val: [['greeting', 'hello']] };
  },
};

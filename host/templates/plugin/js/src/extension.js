// {{name}}: an Airlock extension in JavaScript. It runs after an upload is
// durably stored and returns artifacts derived from it, stored beside it.
// The contract is wit/airlock.wit, world `extension`.
//
// In JavaScript: `upload` is { id, client, filename, contentType,
// size (BigInt), metadata: [[key, value], ...] }; `content` has size(),
// read(offset BigInt, len) -> Uint8Array and sha256(). Return a list of
// { name, contentType, bytes: Uint8Array }; throw { message } to fail.
import { write as log } from 'airlock:plugin/log';

export const postStore = {
  onStored(upload, content) {
    log('info', `${upload.filename}: ${content.size()} bytes of ${upload.contentType}`);
    const summary = `${upload.filename} is ${content.size()} bytes of ${upload.contentType}\n`;
    return [
      { name: 'summary.txt', contentType: 'text/plain', bytes: new TextEncoder().encode(summary) },
    ];
  },
};

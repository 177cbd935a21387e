"""A command-line driver of tuspy (PyPI `tuspy`, import `tusclient`), the tus
project's Python client, for the integration tests: one upload, one JSON line.

    "$(scripts/install-test-clients.sh --print-python)" tests/tus/tuspy_client.py \
        '{"endpoint":"http://127.0.0.1:PORT/v1/tus","file":"/path",...}'

Keys of the one JSON argument (all but `file` optional):
    endpoint   creation URL (POST); may be absent with uploadUrl
    file       the file to upload
    chunkSize  bytes per PATCH (default: the whole file in one PATCH)
    headers    sent on every request, e.g. {"Authorization": "Bearer k"}
    metadata   Upload-Metadata (tuspy sends the header even when it is empty)
    checksum   true: every PATCH carries `Upload-Checksum: sha1 <base64>`
    uploadUrl  resume this upload (HEAD for the offset, then PATCH)
    retries    PATCH retries (default 0); retryDelay seconds between (default 1)

Prints exactly one line on stdout:
    {"ok": true, "url": U, "offset": N}        exit 0; N = the server's last Upload-Offset
    {"ok": false, "error": "...", "status": S, "body": "...", "url": U}
        exit 1 (2 for a bad argument); status, body and url only when known
tuspy stores no URLs here (store_url=False), so every run is independent.
"""

import json
import sys

from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError


def emit(result, code):
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.exit(code)


def main():
    try:
        cfg = json.loads(sys.argv[1])
        if not isinstance(cfg, dict) or not isinstance(cfg.get("file"), str):
            raise ValueError('"file" (a path) is required')
        if not cfg.get("endpoint") and not cfg.get("uploadUrl"):
            raise ValueError('"endpoint" or "uploadUrl" is required')
    except (IndexError, ValueError) as err:
        print("usage: tuspy_client.py '{\"endpoint\":URL,\"file\":PATH,...}'", file=sys.stderr)
        emit({"ok": False, "error": f"bad argument: {err}"}, 2)

    uploader = None
    try:
        client = tus_client.TusClient(cfg.get("endpoint") or "", headers=dict(cfg.get("headers") or {}))
        kwargs = {
            "file_path": cfg["file"],
            "metadata": {str(k): str(v) for k, v in (cfg.get("metadata") or {}).items()},
            "upload_checksum": bool(cfg.get("checksum")),
            "retries": int(cfg.get("retries") or 0),
            "retry_delay": float(cfg.get("retryDelay", 1)),
            "store_url": False,
        }
        if cfg.get("chunkSize"):
            kwargs["chunk_size"] = int(cfg["chunkSize"])
        if cfg.get("uploadUrl"):
            # tuspy asks the server for the offset (HEAD) right here.
            kwargs["url"] = cfg["uploadUrl"]
        uploader = client.uploader(**kwargs)
        uploader.upload()
    except TusCommunicationError as err:
        # TusUploadFailed is a TusCommunicationError too.
        out = {"ok": False, "error": str(err) or repr(err)}
        if getattr(err, "status_code", None) is not None:
            out["status"] = err.status_code
        content = getattr(err, "response_content", None)
        if content is not None:
            out["body"] = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)
        if uploader is not None and uploader.url:
            out["url"] = uploader.url
        emit(out, 1)
    except Exception as err:  # tuspy lets requests' and its own errors through
        out = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        if uploader is not None and uploader.url:
            out["url"] = uploader.url
        emit(out, 1)
    emit({"ok": True, "url": uploader.url, "offset": uploader.offset}, 0)


if __name__ == "__main__":
    main()

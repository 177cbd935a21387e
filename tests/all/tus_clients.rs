//! Real tus clients (tus-js-client, tuspy) against real `airlock serve`
//! processes.
//!
//! The clients are driven by `tests/tus/client.mjs` (Node) and
//! `tests/tus/tuspy_client.py`, installed by `scripts/install-test-clients.sh`:
//! one upload per run, its outcome as one JSON line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::common::*;
use crate::harness::{ALICE, Backends};
use crate::on_both_backends;
use crate::served::{ServeSetup, ServerProcess, files_under};

const MIB: usize = 1 << 20;
/// The protocol version, on every tus request.
const TUS: &str = "1.0.0";
/// Bound on one client run (a stalled client is killed, not waited for).
const CLIENT_LIMIT: Duration = Duration::from_secs(180);

on_both_backends!(
    tus_js_client_uploads_20_mib_in_1_mib_chunks,
    tus_js_client_resumes_an_upload_cut_mid_chunk_into_one_record,
    tus_js_client_parallel_uploads_are_concatenated,
    tus_js_client_deferred_length_upload,
);

// ---------------------------------------------------------------------------
// The clients.

/// `tests/tus/client.mjs`, once tus-js-client is installed.
fn tus_js_script() -> PathBuf {
    let dir = root().join("tests/tus");
    assert!(
        dir.join("node_modules/tus-js-client").is_dir(),
        "tus-js-client is not installed in {}: run scripts/install-test-clients.sh",
        dir.display()
    );
    dir.join("client.mjs")
}

/// The python of the venv with tuspy: `AIRLOCK_TEST_TUSPY`, else
/// `$AIRLOCK_CACHE/venv-tus/bin/python`.
fn tuspy_python() -> PathBuf {
    let python = std::env::var_os("AIRLOCK_TEST_TUSPY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("AIRLOCK_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
                        .join(".cache/airlock")
                });
            cache.join("venv-tus/bin/python")
        });
    assert!(
        python.exists(),
        "no python with tuspy at {}: run scripts/install-test-clients.sh \
         (AIRLOCK_TEST_TUSPY names its python)",
        python.display()
    );
    python
}

/// Runs `program script '<options>'`: the one JSON line it prints.
async fn run_client(program: &Path, script: &Path, options: &Value) -> Value {
    let mut command = tokio::process::Command::new(program);
    command
        .arg(script)
        .arg(options.to_string())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let run = tokio::time::timeout(CLIENT_LIMIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{} {options} ran for over {CLIENT_LIMIT:?}", script.display()))
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (install the test clients with scripts/install-test-clients.sh)",
                program.display()
            )
        });
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "{} {options} printed nothing ({}):\n{stderr}",
            script.display(),
            run.status
        )
    });
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "{} {options} printed no JSON ({e}, {}):\n{stdout}\n{stderr}",
            script.display(),
            run.status
        )
    })
}

/// One run of tus-js-client with `options` (see `tests/tus/client.mjs`).
async fn tus_js(options: Value) -> Value {
    let out = run_client(Path::new("node"), &tus_js_script(), &options).await;
    eprintln!("tus-js-client {options}\n  -> {out}");
    out
}

/// One run of tuspy with `options` (see `tests/tus/tuspy_client.py`).
async fn tuspy(options: Value) -> Value {
    let script = root().join("tests/tus/tuspy_client.py");
    let out = run_client(&tuspy_python(), &script, &options).await;
    eprintln!("tuspy {options}\n  -> {out}");
    out
}

/// The options every run shares: alice's key, the file, and its name and
/// type as metadata; then `more`.
fn options(file: &TestFile, more: Value) -> Value {
    let mut options = json!({
        "file": file.path,
        "headers": { "Authorization": format!("Bearer {ALICE}") },
        "metadata": { "filename": FILENAME, "filetype": "application/octet-stream" },
    });
    let (Value::Object(all), Value::Object(more)) = (&mut options, more) else {
        panic!("options are JSON objects");
    };
    all.extend(more);
    options
}

const FILENAME: &str = "random.bin";

/// Starts uploading `file` with tus-js-client at `endpoint` and cuts the
/// connection once at least `cut` bytes were sent: the upload's URL and
/// the bytes sent. The file goes in one PATCH, so that the cut lands inside
/// its body (tus-js-client aborts at a progress event, and reports one at
/// the first 64 KiB of a PATCH and then every 100 ms: with small chunks on
/// loopback, each PATCH is over before the next report, and the abort lands
/// at the first 64 KiB of a PATCH, which may never leave the client).
async fn cut_short(endpoint: &str, file: &TestFile, cut: usize) -> (String, usize) {
    let out = tus_js(options(
        file,
        json!({ "endpoint": endpoint, "abortAfterBytes": cut }),
    ))
    .await;
    assert_eq!(
        out["aborted"], true,
        "not cut: the file went within 100 ms of the first progress report \
         (make it larger): {out}"
    );
    let url = out["url"].as_str().expect("the cut upload's url");
    let sent = out["bytesUploaded"].as_u64().unwrap() as usize;
    assert!(
        (cut..file.bytes.len()).contains(&sent),
        "cut at {sent} bytes: {out}"
    );
    (url.to_string(), sent)
}

/// `out` is a client's success line: the upload's URL.
fn succeeded(out: &Value) -> String {
    assert_eq!(out["ok"], true, "the upload failed: {out}");
    out["url"].as_str().expect("the upload's url").to_string()
}

/// The id of the upload at `url` (`…/v1/tus/<id>`).
fn upload_id(url: &str) -> String {
    let (_, id) = url.rsplit_once("/v1/tus/").expect("a tus upload URL");
    id.to_string()
}

/// `out` is tus-js-client's success line for the upload `url` ended with:
/// the last response points at the upload's record. Its id.
fn finished_id(out: &Value) -> String {
    let id = upload_id(&succeeded(out));
    assert_eq!(
        out["lastResponse"]["headers"]["upload-record"],
        format!("/v1/uploads/{id}"),
        "the last response names the record: {out}"
    );
    id
}

// ---------------------------------------------------------------------------
// Files and records.

/// Random bytes in a file of their own.
struct TestFile {
    path: PathBuf,
    bytes: Bytes,
    _dir: tempfile::TempDir,
}

/// `len` bytes no other upload has (xorshift64*, seeded at random).
fn random_bytes(len: usize) -> Bytes {
    let mut state = uuid::Uuid::new_v4().as_u64_pair().0 | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        bytes.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    bytes.truncate(len);
    bytes.into()
}

fn random_file(len: usize) -> TestFile {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILENAME);
    let bytes = random_bytes(len);
    std::fs::write(&path, &bytes).unwrap();
    TestFile {
        path,
        bytes,
        _dir: dir,
    }
}

/// Alice's HTTP client for the API around the tus endpoint.
struct Api {
    http: reqwest::Client,
}

impl Api {
    fn new() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Self { http }
    }

    async fn get(&self, url: String) -> reqwest::Response {
        self.http.get(url).bearer_auth(ALICE).send().await.unwrap()
    }

    /// The record of upload `id` on `server`.
    async fn record(&self, server: &ServerProcess, id: &str) -> Value {
        let response = self.get(server.url(&format!("/v1/uploads/{id}"))).await;
        crate::harness::json(response, 200).await
    }

    /// Upload `id` on `server` is recorded with exactly `bytes`: its
    /// record (size, sha256, name) and its content.
    async fn assert_stored(&self, server: &ServerProcess, id: &str, bytes: &[u8]) {
        let record = self.record(server, id).await;
        assert_eq!(record["id"], id, "{record}");
        assert_eq!(record["size"], bytes.len(), "{record}");
        assert_eq!(record["sha256"], sha(bytes), "{record}");
        assert_eq!(record["metadata"]["sha256"], sha(bytes), "{record}");
        assert_eq!(record["content_type"], "application/octet-stream");
        let response = self
            .get(server.url(&format!("/v1/uploads/{id}/content")))
            .await;
        assert_eq!(response.status(), 200);
        let content = response.bytes().await.unwrap();
        assert!(
            content == bytes,
            "the content of {id} differs from what was uploaded ({} bytes, sha256 {}; want {}, {})",
            content.len(),
            sha(&content),
            bytes.len(),
            sha(bytes)
        );
    }

    /// A tus request of alice.
    fn tus(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .bearer_auth(ALICE)
            .header("tus-resumable", TUS)
    }

    /// Creates an upload of `length` bytes on `server`: its URL.
    async fn create(&self, server: &ServerProcess, length: usize) -> String {
        let response = self
            .tus(reqwest::Method::POST, &server.url("/v1/tus"))
            .header("upload-length", length.to_string())
            .header("upload-metadata", metadata())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{:?}", response.headers());
        let location = header(&response, "location");
        let id = upload_id(&location);
        server.url(&format!("/v1/tus/{id}"))
    }

    /// PATCH of `body` at `offset` to `url`, with `checksum` if any.
    async fn patch(
        &self,
        url: &str,
        offset: usize,
        body: impl Into<reqwest::Body>,
        checksum: Option<String>,
    ) -> reqwest::Response {
        let mut request = self
            .tus(reqwest::Method::PATCH, url)
            .header("content-type", "application/offset+octet-stream")
            .header("upload-offset", offset.to_string());
        if let Some(checksum) = checksum {
            request = request.header("upload-checksum", checksum);
        }
        request.body(body).send().await.unwrap()
    }

    /// The `Upload-Offset` of a HEAD on `url`.
    async fn offset(&self, url: &str) -> usize {
        let response = self.tus(reqwest::Method::HEAD, url).send().await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "HEAD {url}: {:?}",
            response.headers()
        );
        header(&response, "upload-offset").parse().unwrap()
    }
}

/// `Upload-Metadata` naming the file and its type.
fn metadata() -> String {
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    format!(
        "filename {},filetype {}",
        b64(FILENAME),
        b64("application/octet-stream")
    )
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", response.headers()))
        .to_str()
        .unwrap()
        .to_string()
}

/// `Upload-Checksum: sha256 <base64>` of `bytes`.
fn sha256_checksum(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(bytes);
    format!(
        "sha256 {}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

fn serve_setup(backends: Backends) -> ServeSetup {
    ServeSetup::new(backends, |_| {})
}

// ---------------------------------------------------------------------------
// tus-js-client, on both backend mixes.

async fn tus_js_client_uploads_20_mib_in_1_mib_chunks(backends: Backends) {
    let setup = serve_setup(backends);
    let server = setup.serve("server").await;
    let file = random_file(20 * MIB);
    let out = tus_js(options(
        &file,
        json!({ "endpoint": server.url("/v1/tus"), "chunkSize": MIB }),
    ))
    .await;
    assert_eq!(out["bytesUploaded"], file.bytes.len(), "{out}");
    let id = finished_id(&out);
    let api = Api::new();
    api.assert_stored(&server, &id, &file.bytes).await;
    assert_eq!(api.record(&server, &id).await["filename"], FILENAME);
}

async fn tus_js_client_resumes_an_upload_cut_mid_chunk_into_one_record(backends: Backends) {
    let setup = serve_setup(backends);
    let server = setup.serve("server").await;
    let file = random_file(16 * MIB);
    let api = Api::new();
    let cut = 7 * MIB + 300_001;
    let (url, sent) = cut_short(&server.url("/v1/tus"), &file, cut).await;
    eprintln!(
        "cut after {sent} bytes sent; the server has {}",
        api.offset(&url).await
    );

    // Resumed from the URL alone: a 4xx on it fails the run instead of
    // quietly starting another upload.
    let second = tus_js(options(
        &file,
        json!({ "uploadUrl": &url, "chunkSize": MIB }),
    ))
    .await;
    assert_eq!(second["url"], url.as_str(), "{second}");
    let id = finished_id(&second);
    assert_eq!(id, upload_id(&url));
    api.assert_stored(&server, &id, &file.bytes).await;

    // Exactly one upload was made, and one record.
    let created = r#"airlock_resumable_uploads_total{event="created"}"#;
    let finished = r#"airlock_resumable_uploads_total{event="finished"}"#;
    assert_eq!(server.metric(created).await, 1.0, "uploads created");
    assert_eq!(server.metric(finished).await, 1.0, "uploads finished");
    if backends == Backends::Local {
        let records: Vec<_> = files_under(&setup.data().join("uploads"))
            .into_iter()
            .filter(|path| path.ends_with("record.json"))
            .collect();
        assert_eq!(records.len(), 1, "{records:?}");
        assert!(
            records[0].ends_with(format!("{id}/record.json")),
            "{records:?}"
        );
    }
}

async fn tus_js_client_parallel_uploads_are_concatenated(backends: Backends) {
    let setup = serve_setup(backends);
    let server = setup.serve("server").await;
    let file = random_file(9 * MIB + 12_345);
    let out = tus_js(options(
        &file,
        json!({
            "endpoint": server.url("/v1/tus"),
            "parallelUploads": 4,
            "chunkSize": MIB,
        }),
    ))
    .await;
    let id = finished_id(&out);
    Api::new().assert_stored(&server, &id, &file.bytes).await;
    assert_eq!(
        server
            .metric(r#"airlock_resumable_uploads_total{event="finished"}"#)
            .await,
        1.0,
        "only the final upload is recorded"
    );
}

async fn tus_js_client_deferred_length_upload(backends: Backends) {
    let setup = serve_setup(backends);
    let server = setup.serve("server").await;
    let file = random_file(3 * MIB + 777);
    let out = tus_js(options(
        &file,
        json!({
            "endpoint": server.url("/v1/tus"),
            "chunkSize": MIB,
            "uploadLengthDeferred": true,
        }),
    ))
    .await;
    let id = finished_id(&out);
    Api::new().assert_stored(&server, &id, &file.bytes).await;
}

// ---------------------------------------------------------------------------
// tuspy and checksums.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuspy_with_checksums_and_a_patch_with_a_wrong_one() {
    let setup = serve_setup(Backends::Local);
    let server = setup.serve("server").await;
    let api = Api::new();

    // tuspy: every PATCH with `Upload-Checksum: sha1 …`.
    let file = random_file(3 * MIB);
    let out = tuspy(options(
        &file,
        json!({
            "endpoint": server.url("/v1/tus"),
            "chunkSize": MIB,
            "checksum": true,
        }),
    ))
    .await;
    let url = succeeded(&out);
    assert_eq!(out["offset"], file.bytes.len(), "{out}");
    api.assert_stored(&server, &upload_id(&url), &file.bytes)
        .await;

    // By hand: a PATCH whose body does not match its checksum is dropped
    // whole.
    let bytes = random_bytes(MIB);
    let quarter = MIB / 4;
    let url = api.create(&server, bytes.len()).await;
    let first = bytes.slice(..quarter);
    let response = api
        .patch(&url, 0, first.clone(), Some(sha256_checksum(&first)))
        .await;
    assert_eq!(response.status(), 204, "{:?}", response.headers());
    assert_eq!(header(&response, "upload-offset"), quarter.to_string());

    let second = bytes.slice(quarter..2 * quarter);
    let wrong = sha256_checksum(&bytes.slice(2 * quarter..3 * quarter));
    let response = api.patch(&url, quarter, second.clone(), Some(wrong)).await;
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(
        status, 460,
        "a body that does not match its checksum: {body}"
    );
    assert_eq!(
        api.offset(&url).await,
        quarter,
        "the mismatched body was kept"
    );

    // The same bytes with their own checksum are taken, and the rest.
    let response = api
        .patch(
            &url,
            quarter,
            second.clone(),
            Some(sha256_checksum(&second)),
        )
        .await;
    assert_eq!(response.status(), 204, "{:?}", response.headers());
    let rest = bytes.slice(2 * quarter..);
    let response = api
        .patch(
            &url,
            2 * quarter,
            rest.clone(),
            Some(sha256_checksum(&rest)),
        )
        .await;
    assert_eq!(response.status(), 204, "{:?}", response.headers());
    let id = upload_id(&url);
    assert_eq!(
        header(&response, "upload-record"),
        format!("/v1/uploads/{id}")
    );
    api.assert_stored(&server, &id, &bytes).await;
    assert_eq!(
        server
            .metric(r#"airlock_resumable_uploads_total{event="checksum_failed"}"#)
            .await,
        1.0
    );
}

// ---------------------------------------------------------------------------
// Two nodes on the same S3 and Redis.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_resume_each_others_uploads_and_serialize_patches() {
    let setup_a = serve_setup(Backends::S3Redis);
    let setup_b = setup_a.another_node();
    let (a, b) = tokio::join!(setup_a.serve("node-a"), setup_b.serve("node-b"));
    let api = Api::new();

    // Started on A, cut mid-way, finished on B.
    let file = random_file(12 * MIB);
    let (url_a, _) = cut_short(&a.url("/v1/tus"), &file, 3 * MIB + 200_003).await;
    let id = upload_id(&url_a);
    assert_eq!(url_a, a.url(&format!("/v1/tus/{id}")));
    let url_b = b.url(&format!("/v1/tus/{id}"));
    let second = tus_js(options(
        &file,
        json!({ "uploadUrl": url_b, "chunkSize": MIB }),
    ))
    .await;
    assert_eq!(finished_id(&second), id);
    api.assert_stored(&b, &id, &file.bytes).await;
    api.assert_stored(&a, &id, &file.bytes).await;

    // Two PATCHes at the same offset at the same time, one to each node:
    // one is taken, the other refused.
    let length = 3 * MIB;
    let url_a = api.create(&a, length).await;
    let id = upload_id(&url_a);
    let url_b = b.url(&format!("/v1/tus/{id}"));
    let (x, y) = (random_bytes(2 * MIB), random_bytes(2 * MIB));
    let (to_a, to_b) = tokio::join!(
        api.patch(&url_a, 0, paced(x.clone()), None),
        api.patch(&url_b, 0, paced(y.clone()), None),
    );
    let statuses = [to_a.status().as_u16(), to_b.status().as_u16()];
    eprintln!("concurrent PATCHes to A and B: {statuses:?}");
    let winner = match statuses {
        [204, 409 | 423] => x,
        [409 | 423, 204] => y,
        _ => panic!(
            "want one 204 and one 409 or 423, got {statuses:?}:\nA: {:?}\nB: {:?}",
            to_a.headers(),
            to_b.headers()
        ),
    };
    assert_eq!(api.offset(&url_a).await, 2 * MIB);
    assert_eq!(api.offset(&url_b).await, 2 * MIB);
    let rest = random_bytes(length - 2 * MIB);
    let response = api.patch(&url_b, 2 * MIB, rest.clone(), None).await;
    assert_eq!(response.status(), 204, "{:?}", response.headers());
    assert_eq!(
        header(&response, "upload-record"),
        format!("/v1/uploads/{id}")
    );
    let expected = [winner, rest].concat();
    api.assert_stored(&a, &id, &expected).await;
    api.assert_stored(&b, &id, &expected).await;
}

/// `bytes` as a body sent 64 KiB every 20 ms (the client's pace, so that
/// two such PATCHes overlap).
fn paced(bytes: Bytes) -> reqwest::Body {
    const CHUNK: usize = 64 << 10;
    let stream = futures::stream::unfold(0usize, move |at| {
        let bytes = bytes.clone();
        async move {
            if at >= bytes.len() {
                return None;
            }
            if at > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let end = (at + CHUNK).min(bytes.len());
            Some((Ok::<_, std::io::Error>(bytes.slice(at..end)), end))
        }
    });
    reqwest::Body::wrap_stream(stream)
}

//! The tus 1.0.0 protocol under /v1/tus, request by request, over a real
//! listener, on local disk + memory and on the real S3 server + real Redis.

use std::time::Duration;

use airlock::config::Config;
use airlock::storage::{BlobStore, LocalStore, S3Store};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use reqwest::{Method, Response, StatusCode};
use sha2::Digest as _;

use crate::common::*;
use crate::harness::*;
use crate::on_both_backends;

const TUS: &str = "/v1/tus";
const OFFSET_STREAM: &str = "application/offset+octet-stream";

/// A test server and the configuration it runs.
struct Tus {
    server: TestServer,
    config: Config,
}

impl Tus {
    async fn start(backends: Backends) -> Self {
        Self::with(backends, |_| {}).await
    }

    async fn with(backends: Backends, change: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(backends, dir.path());
        change(&mut config);
        let server = TestServer::with_config(config.clone(), dir).await;
        Self { server, config }
    }

    /// A tus request as the client with `key`.
    fn request(&self, method: Method, key: &str, path: &str) -> reqwest::RequestBuilder {
        self.server
            .http
            .request(method, self.server.url(path))
            .bearer_auth(key)
            .header("tus-resumable", "1.0.0")
    }

    /// Creates an upload of `length` bytes named `filename` of `filetype`;
    /// its path.
    async fn create(&self, key: &str, length: u64, filename: &str, filetype: &str) -> String {
        let response = self
            .request(Method::POST, key, TUS)
            .header("upload-length", length)
            .header("upload-metadata", metadata(filename, filetype))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", text(response).await);
        location(&response)
    }

    async fn head(&self, key: &str, path: &str) -> Response {
        self.request(Method::HEAD, key, path).send().await.unwrap()
    }

    async fn patch(
        &self,
        key: &str,
        path: &str,
        offset: u64,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        self.request(Method::PATCH, key, path)
            .header("upload-offset", offset)
            .header("content-type", OFFSET_STREAM)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// [`Self::patch`] as alice, with more headers.
    async fn patch_with(
        &self,
        path: &str,
        offset: u64,
        extra: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> Response {
        let mut request = self
            .request(Method::PATCH, ALICE, path)
            .header("upload-offset", offset)
            .header("content-type", OFFSET_STREAM);
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        request.body(body).send().await.unwrap()
    }

    /// A chunked PATCH from offset 0, as alice, over a raw socket: one
    /// chunk declared `chunk` bytes long of which `bytes` are written, then
    /// the connection closes before the body ends (no RST: every byte
    /// written reaches the server before the close).
    async fn send_then_close(&self, path: &str, chunk: u64, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let addr = self.server.base.trim_start_matches("http://").to_string();
        let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "PATCH {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ALICE}\r\n\
             Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
             Content-Type: {OFFSET_STREAM}\r\nTransfer-Encoding: chunked\r\n\r\n{chunk:x}\r\n"
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(bytes).await.unwrap();
        if bytes.len() as u64 == chunk {
            socket.write_all(b"\r\n").await.unwrap();
        }
        socket.shutdown().await.unwrap();
    }

    /// The upload's offset, from a HEAD that must succeed.
    async fn offset(&self, key: &str, path: &str) -> u64 {
        let response = self.head(key, path).await;
        assert_eq!(response.status(), 200);
        number(&response, "upload-offset")
    }

    /// The store the server writes to.
    async fn store(&self) -> Box<dyn BlobStore> {
        match self.config.storage.backend {
            airlock::config::StorageBackend::Local => {
                Box::new(LocalStore::open(&self.config.storage.path).await.unwrap())
            }
            airlock::config::StorageBackend::S3 => {
                Box::new(S3Store::connect(&self.config.storage.s3).await.unwrap())
            }
        }
    }

    /// Keys of staged uploads (anything under `tus/` in S3, the files of
    /// `.tus/` on disk).
    async fn staged(&self) -> Vec<String> {
        match self.config.storage.backend {
            airlock::config::StorageBackend::Local => {
                let dir = self.config.storage.path.join(".tus");
                let mut names: Vec<String> = std::fs::read_dir(dir)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect();
                names.sort();
                names
            }
            airlock::config::StorageBackend::S3 => {
                let store = self.store().await;
                let mut pages = store.list("tus/");
                let mut keys = Vec::new();
                while let Some(page) = futures::StreamExt::next(&mut pages).await {
                    keys.extend(page.unwrap().into_iter().map(|l| l.key));
                }
                keys
            }
        }
    }

    /// Multipart uploads open in the bucket (none on local disk).
    async fn open_multipart_uploads(&self) -> usize {
        if self.config.storage.backend != airlock::config::StorageBackend::S3 {
            return 0;
        }
        let store = S3Store::connect(&self.config.storage.s3).await.unwrap();
        let prefix = store.object_key("uploads").unwrap();
        let listed = store
            .client()
            .list_multipart_uploads()
            .bucket(store.bucket())
            .prefix(prefix)
            .send()
            .await
            .unwrap();
        listed.uploads().len()
    }
}

fn metadata(filename: &str, filetype: &str) -> String {
    format!(
        "filename {},filetype {}",
        STANDARD.encode(filename),
        STANDARD.encode(filetype)
    )
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

fn number(response: &Response, name: &str) -> u64 {
    header(response, name)
        .unwrap_or_else(|| panic!("no {name}: {:?}", response.headers()))
        .parse()
        .unwrap()
}

fn location(response: &Response) -> String {
    let location = header(response, "location").expect("Location").to_string();
    assert!(location.starts_with("/v1/tus/"), "{location}");
    location
}

/// The upload id of a tus path.
fn id_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap()
}

async fn text(response: Response) -> String {
    response.text().await.unwrap()
}

/// The JSON error of a response that must have `status`, and its code.
async fn error(response: Response, status: u16) -> String {
    assert_eq!(
        header(&response, "tus-resumable"),
        Some("1.0.0"),
        "every tus response says its version"
    );
    let body = json(response, status).await;
    body["error"]["code"].as_str().unwrap().to_string()
}

/// Bytes that pass every example processor as `application/octet-stream`.
fn random(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect::<Vec<u8>>()
        .into()
}

on_both_backends!(
    chunks_make_one_upload_through_the_pipeline,
    creation_with_upload_answers_with_the_record,
    checksums_are_checked_and_a_mismatch_drops_the_chunk,
    deferred_length_is_declared_by_a_later_patch,
    termination_removes_the_staged_bytes,
    a_rejected_upload_answers_422_and_leaves_nothing,
    partial_uploads_concatenate,
    an_interrupted_patch_keeps_what_arrived,
    a_client_gone_after_its_last_byte_still_gets_its_upload_finished,
    an_empty_upload_is_finished_at_creation,
    expired_uploads_are_swept_with_their_bytes,
);

async fn chunks_make_one_upload_through_the_pipeline(backends: Backends) {
    let tus = Tus::start(backends).await;
    let bytes = random(700_000, 1);
    let path = tus
        .create(
            ALICE,
            bytes.len() as u64,
            "movie.bin",
            "application/octet-stream",
        )
        .await;

    let head = tus.head(ALICE, &path).await;
    assert_eq!(head.status(), 200);
    assert_eq!(number(&head, "upload-offset"), 0);
    assert_eq!(number(&head, "upload-length"), 700_000);
    assert_eq!(header(&head, "cache-control"), Some("no-store"));
    assert_eq!(
        header(&head, "upload-metadata"),
        Some(metadata("movie.bin", "application/octet-stream").as_str())
    );
    assert!(header(&head, "upload-expires").is_some());

    let mut offset = 0;
    for chunk in bytes.chunks(300_000) {
        let response = tus
            .patch(ALICE, &path, offset, Bytes::copy_from_slice(chunk))
            .await;
        assert_eq!(response.status(), 204, "{}", text(response).await);
        offset = number(&response, "upload-offset");
        if offset < bytes.len() as u64 {
            assert!(header(&response, "upload-expires").is_some());
            assert!(header(&response, "upload-record").is_none());
        } else {
            let record_url = format!("/v1/uploads/{}", id_of(&path));
            assert_eq!(
                header(&response, "upload-record"),
                Some(record_url.as_str())
            );
        }
    }
    assert_eq!(offset, 700_000);

    let record = json(
        tus.server
            .get(ALICE, &format!("/v1/uploads/{}", id_of(&path)))
            .await,
        200,
    )
    .await;
    assert_eq!(record["filename"], "movie.bin");
    assert_eq!(record["content_type"], "application/octet-stream");
    assert_eq!(record["size"], 700_000);
    assert_eq!(record["sha256"], sha(&bytes));
    // The processors ran, on the stored bytes.
    assert_eq!(record["metadata"]["sha256"], sha(&bytes), "{record}");
    // The tus URL of a finished upload serves its content.
    let content = tus.server.get(ALICE, &path).await;
    assert_eq!(content.status(), 200);
    assert_eq!(content.bytes().await.unwrap(), bytes);
    let head = tus.head(ALICE, &path).await;
    assert_eq!(number(&head, "upload-offset"), 700_000);
    assert!(tus.staged().await.is_empty(), "{:?}", tus.staged().await);
    assert_eq!(tus.open_multipart_uploads().await, 0);
    assert_eq!(
        tus.server
            .metric("airlock_resumable_uploads_total{event=\"finished\"}")
            .await,
        1.0
    );
    tus.server.stop().await;
}

async fn creation_with_upload_answers_with_the_record(backends: Backends) {
    let tus = Tus::start(backends).await;
    let bytes = random(180_000, 2);
    let response = tus
        .request(Method::POST, ALICE, TUS)
        .header("upload-length", bytes.len())
        .header(
            "upload-metadata",
            metadata("small.bin", "application/octet-stream"),
        )
        .header("content-type", OFFSET_STREAM)
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let path = location(&response);
    assert_eq!(number(&response, "upload-offset"), 180_000);
    assert!(header(&response, "upload-record").is_some());
    let record = json(response, 201).await;
    assert_eq!(record["id"], id_of(&path));
    assert_eq!(record["sha256"], sha(&bytes));
    tus.server.stop().await;
}

async fn checksums_are_checked_and_a_mismatch_drops_the_chunk(backends: Backends) {
    let tus = Tus::start(backends).await;
    let bytes = random(6 << 20, 3);
    let path = tus
        .create(
            ALICE,
            bytes.len() as u64,
            "sum.bin",
            "application/octet-stream",
        )
        .await;
    let (first, rest) = bytes.split_at(5_500_000);
    let sha1 = STANDARD.encode(sha1::Sha1::digest(first));
    let (server, upload) = (&tus, path.as_str());
    let patch = move |offset: u64, body: Bytes, checksum: String| async move {
        server
            .patch_with(upload, offset, &[("upload-checksum", &checksum)], body)
            .await
    };
    // Wrong digest (of other bytes): 460, and the bytes are gone.
    let wrong = STANDARD.encode(sha2::Sha256::digest(rest));
    let response = patch(0, Bytes::copy_from_slice(first), format!("sha256 {wrong}")).await;
    assert_eq!(error(response, 460).await, "checksum_mismatch");
    assert_eq!(tus.offset(ALICE, &path).await, 0);
    // Unknown algorithm: 400, before the body is read (so a small one: a
    // large one may still be in flight when the answer comes).
    let response = patch(0, random(100, 3), "crc32 AAAAAA==".into()).await;
    assert_eq!(error(response, 400).await, "bad_request");
    // Right digests, sha1 then md5.
    let response = patch(0, Bytes::copy_from_slice(first), format!("sha1 {sha1}")).await;
    assert_eq!(response.status(), 204);
    let md5 = STANDARD.encode(md5::Md5::digest(rest));
    let response = patch(
        first.len() as u64,
        Bytes::copy_from_slice(rest),
        format!("md5 {md5}"),
    )
    .await;
    assert_eq!(response.status(), 204, "{}", text(response).await);
    let record = json(
        tus.server
            .get(ALICE, &format!("/v1/uploads/{}", id_of(&path)))
            .await,
        200,
    )
    .await;
    assert_eq!(record["sha256"], sha(&bytes));
    assert_eq!(
        tus.server
            .metric("airlock_resumable_uploads_total{event=\"checksum_failed\"}")
            .await,
        1.0
    );
    tus.server.stop().await;
}

async fn deferred_length_is_declared_by_a_later_patch(backends: Backends) {
    let tus = Tus::start(backends).await;
    let bytes = random(100_000, 4);
    let response = tus
        .request(Method::POST, ALICE, TUS)
        .header("upload-defer-length", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let path = location(&response);
    let head = tus.head(ALICE, &path).await;
    assert_eq!(header(&head, "upload-defer-length"), Some("1"));
    assert!(header(&head, "upload-length").is_none());
    let response = tus.patch(ALICE, &path, 0, bytes.slice(..60_000)).await;
    assert_eq!(response.status(), 204);
    // The length comes with the last bytes; a length below what arrived
    // is refused first.
    let response = tus
        .patch_with(
            &path,
            60_000,
            &[("upload-length", "10")],
            bytes.slice(60_000..),
        )
        .await;
    assert_eq!(error(response, 400).await, "bad_request");
    let response = tus
        .patch_with(
            &path,
            60_000,
            &[("upload-length", "100000")],
            bytes.slice(60_000..),
        )
        .await;
    assert_eq!(response.status(), 204);
    assert!(header(&response, "upload-record").is_some());
    let record = json(
        tus.server
            .get(ALICE, &format!("/v1/uploads/{}", id_of(&path)))
            .await,
        200,
    )
    .await;
    assert_eq!(record["sha256"], sha(&bytes));
    tus.server.stop().await;
}

async fn termination_removes_the_staged_bytes(backends: Backends) {
    let tus = Tus::start(backends).await;
    let path = tus
        .create(ALICE, 7 << 20, "gone.bin", "application/octet-stream")
        .await;
    // More than an S3 part: a multipart upload is open.
    let response = tus.patch(ALICE, &path, 0, random(6 << 20, 5)).await;
    assert_eq!(response.status(), 204);
    assert!(!tus.staged().await.is_empty());
    // Another client cannot see or end it.
    assert_eq!(tus.head(BOB, &path).await.status(), 404);
    let response = tus
        .request(Method::DELETE, BOB, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(error(response, 404).await, "not_found");

    let response = tus
        .request(Method::DELETE, ALICE, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(tus.head(ALICE, &path).await.status(), 404);
    let response = tus.patch(ALICE, &path, 6 << 20, random(10, 5)).await;
    assert_eq!(error(response, 404).await, "not_found");
    assert!(tus.staged().await.is_empty(), "{:?}", tus.staged().await);
    assert_eq!(tus.open_multipart_uploads().await, 0);
    tus.server.stop().await;
}

async fn a_rejected_upload_answers_422_and_leaves_nothing(backends: Backends) {
    let tus = Tus::start(backends).await;
    // Declared a PNG, but not one: content-sniff rejects it.
    let bytes = random(200_000, 6);
    let path = tus
        .create(ALICE, bytes.len() as u64, "fake.png", "image/png")
        .await;
    let response = tus.patch(ALICE, &path, 0, bytes).await;
    let body = json(response, 422).await;
    assert_eq!(body["error"]["code"], "rejected");
    assert_eq!(body["error"]["plugin"], "content-sniff");
    let id = id_of(&path);
    assert_eq!(
        tus.server
            .get(ALICE, &format!("/v1/uploads/{id}"))
            .await
            .status(),
        404
    );
    assert_eq!(tus.head(ALICE, &path).await.status(), 404);
    assert!(tus.staged().await.is_empty(), "{:?}", tus.staged().await);
    let store = tus.store().await;
    let mut pages = store.list("uploads/");
    while let Some(page) = futures::StreamExt::next(&mut pages).await {
        assert!(
            page.unwrap().is_empty(),
            "something stored for a rejected upload"
        );
    }
    tus.server.stop().await;
}

async fn partial_uploads_concatenate(backends: Backends) {
    let tus = Tus::start(backends).await;
    let parts = [random(6 << 20, 7), random(300_000, 8)];
    let mut urls = Vec::new();
    for part in &parts {
        let response = tus
            .request(Method::POST, ALICE, TUS)
            .header("upload-length", part.len())
            .header("upload-concat", "partial")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        urls.push(location(&response));
    }
    let last = &urls[1];
    assert_eq!(
        header(&tus.head(ALICE, last).await, "upload-concat"),
        Some("partial")
    );
    // A part that is not finished cannot be concatenated.
    let final_of = |urls: String| {
        tus.request(Method::POST, ALICE, TUS)
            .header("upload-concat", format!("final;{urls}"))
            .header(
                "upload-metadata",
                metadata("joined.bin", "application/octet-stream"),
            )
            .send()
    };
    let both = format!("{}{} {}", tus.server.base, urls[0], urls[1]);
    assert_eq!(
        error(final_of(both.clone()).await.unwrap(), 400).await,
        "bad_request"
    );
    for (url, part) in urls.iter().zip(&parts) {
        let response = tus.patch(ALICE, url, 0, part.clone()).await;
        assert_eq!(response.status(), 204, "{}", text(response).await);
        // A part is never processed on its own.
        assert!(header(&response, "upload-record").is_none());
    }
    let response = final_of(both).await.unwrap();
    assert_eq!(response.status(), 201);
    let path = location(&response);
    assert!(header(&response, "upload-record").is_some());
    let record = json(response, 201).await;
    let whole: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    assert_eq!(record["sha256"], sha(&whole));
    assert_eq!(record["filename"], "joined.bin");
    let content = tus.server.get(ALICE, &path).await.bytes().await.unwrap();
    assert_eq!(content, whole);
    // The parts are used up; a final upload takes no PATCH.
    assert_eq!(tus.head(ALICE, &urls[0]).await.status(), 404);
    let response = tus
        .patch(ALICE, &path, whole.len() as u64, random(1, 1))
        .await;
    assert!(response.status().is_client_error());
    assert!(tus.staged().await.is_empty(), "{:?}", tus.staged().await);
    tus.server.stop().await;
}

async fn an_interrupted_patch_keeps_what_arrived(backends: Backends) {
    let tus = Tus::start(backends).await;
    let bytes = random(7 << 20, 9);
    let path = tus
        .create(
            ALICE,
            bytes.len() as u64,
            "cut.bin",
            "application/octet-stream",
        )
        .await;
    // 6 MiB arrive, then the connection closes mid-chunk. (A client library
    // whose body fails may drop bytes it had buffered but not yet written;
    // the socket here writes every byte before it closes, so what the
    // server must keep is exact.)
    tus.send_then_close(&path, bytes.len() as u64, &bytes.slice(..6 << 20))
        .await;
    // The server keeps the bytes that came, once it has seen the drop.
    let kept = eventually(Duration::from_secs(10), || async {
        let offset = tus.offset(ALICE, &path).await;
        (offset == 6 << 20).then_some(offset)
    })
    .await;
    assert_eq!(
        kept,
        Some(6 << 20),
        "offset: {}",
        tus.offset(ALICE, &path).await
    );
    let response = tus
        .patch(ALICE, &path, 6 << 20, bytes.slice(6 << 20..))
        .await;
    assert_eq!(response.status(), 204, "{}", text(response).await);
    let record = json(
        tus.server
            .get(ALICE, &format!("/v1/uploads/{}", id_of(&path)))
            .await,
        200,
    )
    .await;
    assert_eq!(record["sha256"], sha(&bytes));
    tus.server.stop().await;
}

async fn a_client_gone_after_its_last_byte_still_gets_its_upload_finished(backends: Backends) {
    let tus = Tus::start(backends).await;
    let bytes = random(300_000, 11);
    let path = tus
        .create(
            ALICE,
            bytes.len() as u64,
            "last.bin",
            "application/octet-stream",
        )
        .await;
    // Every byte (chunked), then the connection closes before the body's
    // last chunk: the server reads them all, then a broken body.
    tus.send_then_close(&path, bytes.len() as u64, &bytes).await;
    // A client resuming sees it finished (with its record), not an upload
    // stuck at its full length.
    let record_url = format!("/v1/uploads/{}", id_of(&path));
    let finished = eventually(Duration::from_secs(10), || async {
        let head = tus.head(ALICE, &path).await;
        (header(&head, "upload-record") == Some(record_url.as_str())).then_some(())
    })
    .await;
    assert!(
        finished.is_some(),
        "not finished: {:?}",
        tus.head(ALICE, &path).await.headers()
    );
    let record = json(tus.server.get(ALICE, &record_url).await, 200).await;
    assert_eq!(record["sha256"], sha(&bytes));
    tus.server.stop().await;
}

async fn an_empty_upload_is_finished_at_creation(backends: Backends) {
    let tus = Tus::start(backends).await;
    let response = tus
        .request(Method::POST, ALICE, TUS)
        .header("upload-length", 0)
        .header("upload-metadata", metadata("empty.txt", "text/plain"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let path = location(&response);
    assert_eq!(number(&response, "upload-offset"), 0);
    assert!(header(&response, "upload-record").is_some());
    let record = json(response, 201).await;
    assert_eq!(record["size"], 0);
    assert_eq!(record["sha256"], sha(b""));
    assert_eq!(
        tus.server
            .get(ALICE, &path)
            .await
            .bytes()
            .await
            .unwrap()
            .len(),
        0
    );
    assert!(tus.staged().await.is_empty(), "{:?}", tus.staged().await);
    tus.server.stop().await;
}

async fn expired_uploads_are_swept_with_their_bytes(backends: Backends) {
    let tus = Tus::with(backends, |config| {
        // S3 keeps times to the second: long enough that the PATCH right
        // after the creation still finds it.
        config.tus.expiration_seconds = 3;
        config.tus.expiry_sweep_interval_seconds = 1;
    })
    .await;
    let path = tus
        .create(ALICE, 7 << 20, "old.bin", "application/octet-stream")
        .await;
    let response = tus.patch(ALICE, &path, 0, random(6 << 20, 10)).await;
    assert_eq!(response.status(), 204);
    let swept = eventually(Duration::from_secs(20), || async {
        tus.staged().await.is_empty().then_some(())
    })
    .await;
    assert!(swept.is_some(), "still staged: {:?}", tus.staged().await);
    let status = tus.head(ALICE, &path).await.status();
    assert!([404, 410].contains(&status.as_u16()), "{status}");
    assert_eq!(tus.open_multipart_uploads().await, 0);
    assert!(
        tus.server
            .metric("airlock_resumable_uploads_total{event=\"expired\"}")
            .await
            >= 1.0
    );
    tus.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_describes_the_server() {
    let tus = Tus::start(Backends::Local).await;
    for path in [
        TUS.to_string(),
        format!("{TUS}/0123456789abcdef0123456789abcdef"),
    ] {
        // No key, no version: a client asks before it knows either.
        let response = tus
            .server
            .http
            .request(Method::OPTIONS, tus.server.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
        assert_eq!(header(&response, "tus-resumable"), Some("1.0.0"));
        assert_eq!(header(&response, "tus-version"), Some("1.0.0"));
        let extensions = header(&response, "tus-extension").unwrap();
        for extension in [
            "creation",
            "creation-with-upload",
            "creation-defer-length",
            "termination",
            "checksum",
            "expiration",
            "concatenation",
        ] {
            assert!(
                extensions.split(',').any(|e| e == extension),
                "{extensions}"
            );
        }
        assert_eq!(number(&response, "tus-max-size"), 100 << 20);
        assert_eq!(
            header(&response, "tus-checksum-algorithm"),
            Some("sha1,sha256,md5")
        );
    }
    tus.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_typed_errors_and_change_nothing() {
    let tus = Tus::start(Backends::Local).await;
    let path = tus
        .create(ALICE, 1000, "a.bin", "application/octet-stream")
        .await;
    let create = |headers: &[(&str, &str)]| {
        let mut request = tus.request(Method::POST, ALICE, TUS);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    for (headers, status, code) in [
        (vec![], 400, "bad_request"),
        (vec![("upload-length", "-5")], 400, "bad_request"),
        (vec![("upload-length", "12abc")], 400, "bad_request"),
        (
            vec![("upload-length", "99999999999999999999999")],
            400,
            "bad_request",
        ),
        (
            vec![("upload-length", "10"), ("upload-defer-length", "1")],
            400,
            "bad_request",
        ),
        (vec![("upload-defer-length", "2")], 400, "bad_request"),
        (
            vec![
                ("upload-length", "10"),
                ("upload-metadata", "filename !!notbase64"),
            ],
            400,
            "bad_request",
        ),
        (
            vec![
                ("upload-length", "10"),
                ("upload-concat", "final;/elsewhere/x"),
            ],
            400,
            "bad_request",
        ),
        (
            vec![("upload-length", "10"), ("upload-concat", "sideways")],
            400,
            "bad_request",
        ),
        (vec![("upload-length", "209715200")], 413, "too_large"),
    ] {
        let response = create(&headers).await.unwrap();
        assert_eq!(error(response, status).await, code, "{headers:?}");
    }
    // Bob may send 64 KiB of images only.
    let response = tus
        .request(Method::POST, BOB, TUS)
        .header("upload-length", 100_000)
        .header("upload-metadata", metadata("big.png", "image/png"))
        .send()
        .await
        .unwrap();
    assert_eq!(error(response, 413).await, "too_large");
    let response = tus
        .request(Method::POST, BOB, TUS)
        .header("upload-length", 1000)
        .header("upload-metadata", metadata("notes.txt", "text/plain"))
        .send()
        .await
        .unwrap();
    assert_eq!(error(response, 415).await, "unsupported_type");

    // PATCHes that do not fit.
    let response = tus.patch(ALICE, &path, 5, random(10, 1)).await;
    assert_eq!(error(response, 409).await, "offset_mismatch");
    let response = tus
        .request(Method::PATCH, ALICE, &path)
        .header("upload-offset", 0)
        .header("content-type", "application/octet-stream")
        .body(random(10, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(error(response, 415).await, "unsupported_type");
    let response = tus
        .request(Method::PATCH, ALICE, &path)
        .header("content-type", OFFSET_STREAM)
        .body(random(10, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(error(response, 400).await, "bad_request");
    let response = tus.patch(ALICE, &path, 0, random(1001, 1)).await;
    assert_eq!(error(response, 413).await, "past_length");
    let response = tus
        .patch_with(&path, 0, &[("upload-length", "999")], random(10, 1))
        .await;
    assert_eq!(error(response, 400).await, "bad_request");
    // Unknown, malformed and other clients' ids.
    for (key, target) in [
        (ALICE, format!("{TUS}/0123456789abcdef0123456789abcdef")),
        (ALICE, format!("{TUS}/..%2F..%2Fetc")),
        (BOB, path.clone()),
    ] {
        let response = tus.patch(key, &target, 0, random(10, 1)).await;
        assert_eq!(error(response, 404).await, "not_found", "{target}");
        assert_eq!(tus.head(key, &target).await.status(), 404);
    }
    // A request without the protocol version: 412 naming it.
    let response = tus
        .server
        .http
        .head(tus.server.url(&path))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 412);
    assert_eq!(header(&response, "tus-version"), Some("1.0.0"));
    let response = tus
        .server
        .http
        .post(tus.server.url(TUS))
        .bearer_auth(ALICE)
        .header("upload-length", 10)
        .send()
        .await
        .unwrap();
    assert_eq!(error(response, 412).await, "unsupported_version");
    // Without a key: 401 before anything else.
    let response = tus
        .server
        .http
        .post(tus.server.url(TUS))
        .header("upload-length", 10)
        .send()
        .await
        .unwrap();
    assert_eq!(error(response, 401).await, "unauthorized");

    // Nothing of that moved the upload.
    assert_eq!(tus.offset(ALICE, &path).await, 0);
    tus.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_override_reaches_the_named_method() {
    let tus = Tus::start(Backends::Local).await;
    let path = tus
        .create(ALICE, 5, "o.bin", "application/octet-stream")
        .await;
    let response = tus
        .request(Method::POST, ALICE, &path)
        .header("x-http-method-override", "PATCH")
        .header("upload-offset", 0)
        .header("content-type", OFFSET_STREAM)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::NO_CONTENT,
        "{}",
        text(response).await
    );
    let response = tus
        .request(Method::POST, ALICE, &path)
        .header("x-http-method-override", "HEAD")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(number(&response, "upload-offset"), 5);
    tus.server.stop().await;
}

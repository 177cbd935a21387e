//! The HTTP API end to end over a real listener, on local disk + memory and
//! on the real S3 server + real Redis (the same suite for both).

use airlock::budget::Budget;
use airlock::config::FailurePolicy;
use airlock::runtime::HookKind;
use bytes::Bytes;

use crate::common::*;
use crate::harness::*;
use crate::on_both_backends;

on_both_backends!(
    raw_upload_round_trips_byte_exact,
    multipart_uploads_round_trip_byte_exact,
    jpeg_gets_sha256_exif_stripped_and_a_thumbnail,
    range_reads,
    delete_removes_everything,
    fifty_parallel_uploads_are_all_stored_intact,
    clients_see_only_their_own_uploads,
);

async fn raw_upload_round_trips_byte_exact(backends: Backends) {
    let server = TestServer::start(backends).await;
    let bytes = fixture_bytes("picture.png");
    let record = server
        .upload_json(ALICE, bytes.clone(), "image/png", "", 201)
        .await;
    assert_eq!(record["sha256"], sha(&bytes));
    assert_eq!(record["metadata"]["sha256"], sha(&bytes));
    assert_eq!(record["size"], bytes.len());
    assert_eq!(record["client"], "alice");
    let id = record["id"].as_str().unwrap();
    let got = server
        .get(ALICE, &format!("/v1/uploads/{id}/content"))
        .await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "image/png");
    assert_eq!(got.headers()["etag"], format!("\"{}\"", sha(&bytes)));
    assert_eq!(got.headers()["x-content-type-options"], "nosniff");
    assert!(
        got.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("sandbox")
    );
    assert_eq!(sha(&got.bytes().await.unwrap()), sha(&bytes));
    let again = server.get(ALICE, &format!("/v1/uploads/{id}")).await;
    assert_eq!(json(again, 200).await["id"], id);
    server.stop().await;
}

async fn multipart_uploads_round_trip_byte_exact(backends: Backends) {
    let server = TestServer::start(backends).await;
    // A text file with every byte value in it, and a PNG.
    let text: Bytes = (0..=255u8).cycle().take(300_000).collect::<Vec<_>>().into();
    let png = fixture_bytes("picture.png");
    let form = reqwest::multipart::Form::new()
        .text("note", "a plain field, not a file")
        .part(
            "a",
            reqwest::multipart::Part::bytes(text.to_vec())
                .file_name("data.bin")
                .mime_str("application/octet-stream")
                .unwrap(),
        )
        .part(
            "b",
            reqwest::multipart::Part::bytes(png.to_vec())
                .file_name("../../etc/pic.png")
                .mime_str("image/png")
                .unwrap(),
        );
    let response = server.upload_form(ALICE, form).await;
    let body = json(response, 201).await;
    let uploads = body["uploads"].as_array().unwrap();
    assert_eq!(uploads.len(), 2);
    assert_eq!(
        uploads[1]["filename"], "pic.png",
        "path components are dropped"
    );
    for (record, original) in uploads.iter().zip([&text, &png]) {
        let id = record["id"].as_str().unwrap();
        let got = server
            .get(ALICE, &format!("/v1/uploads/{id}/content"))
            .await
            .bytes()
            .await
            .unwrap();
        assert_eq!(sha(&got), sha(original));
    }
    server.stop().await;
}

async fn jpeg_gets_sha256_exif_stripped_and_a_thumbnail(backends: Backends) {
    let server = TestServer::start(backends).await;
    let jpeg = fixture_bytes("photo-with-gps.jpg");
    let record = server
        .upload_json(ALICE, jpeg.clone(), "image/jpeg", "&wait=true", 201)
        .await;
    assert_eq!(record["metadata"]["exif-stripped"], "true");
    assert_eq!(record["metadata"]["detected-type"], "image/jpeg");
    // The stored bytes are the stripped JPEG, and its digest is recorded.
    let id = record["id"].as_str().unwrap();
    let stored = server
        .get(ALICE, &format!("/v1/uploads/{id}/content"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(record["sha256"], sha(&stored));
    assert!(stored.len() < jpeg.len());
    let derived = record["derived"].as_array().unwrap();
    assert_eq!(derived[0]["name"], "thumbnail.png", "{record}");
    let thumb = server
        .get(ALICE, &format!("/v1/uploads/{id}/derived/thumbnail.png"))
        .await;
    assert_eq!(thumb.headers()["content-type"], "image/png");
    let img = image::load_from_memory(&thumb.bytes().await.unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (256, 192));
    server.stop().await;
}

async fn range_reads(backends: Backends) {
    let server = TestServer::start(backends).await;
    let bytes: Bytes = (0..10_000u32)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let record = server
        .upload_json(ALICE, bytes.clone(), "application/octet-stream", "", 201)
        .await;
    let path = format!("/v1/uploads/{}/content", record["id"].as_str().unwrap());
    let range = |spec: &'static str| {
        let server = &server;
        let path = &path;
        async move {
            server
                .http
                .get(server.url(path))
                .bearer_auth(ALICE)
                .header("range", spec)
                .send()
                .await
                .unwrap()
        }
    };
    let r = range("bytes=0-9").await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 0-9/10000");
    assert_eq!(r.bytes().await.unwrap(), bytes.slice(0..10));
    let r = range("bytes=9990-").await;
    assert_eq!(r.bytes().await.unwrap(), bytes.slice(9990..));
    let r = range("bytes=-5").await;
    assert_eq!(r.headers()["content-range"], "bytes 9995-9999/10000");
    assert_eq!(r.bytes().await.unwrap(), bytes.slice(9995..));
    let r = range("bytes=5000-99999").await;
    assert_eq!(r.bytes().await.unwrap(), bytes.slice(5000..), "end clamped");
    let r = range("bytes=10000-").await;
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */10000");
    let r = range("bytes=0-1,5-6").await;
    assert_eq!(r.status(), 200, "multi-range falls back to the whole body");
    server.stop().await;
}

async fn delete_removes_everything(backends: Backends) {
    let server = TestServer::start(backends).await;
    let record = server.upload_picture(ALICE, "&wait=true", 201).await;
    let id = record["id"].as_str().unwrap();
    assert_eq!(record["derived"].as_array().unwrap().len(), 1);
    let deleted = server.delete(ALICE, &format!("/v1/uploads/{id}")).await;
    assert_eq!(deleted.status(), 204);
    for path in [
        format!("/v1/uploads/{id}"),
        format!("/v1/uploads/{id}/content"),
        format!("/v1/uploads/{id}/derived/thumbnail.png"),
    ] {
        let gone = server.get(ALICE, &path).await;
        assert_eq!(json(gone, 404).await["error"]["code"], "not_found");
    }
    let again = server.delete(ALICE, &format!("/v1/uploads/{id}")).await;
    assert_eq!(again.status(), 404);
    server.stop().await;
}

async fn fifty_parallel_uploads_are_all_stored_intact(backends: Backends) {
    let server = std::sync::Arc::new(TestServer::start(backends).await);
    let mut tasks = Vec::new();
    for i in 0..50u32 {
        let server = std::sync::Arc::clone(&server);
        tasks.push(tokio::spawn(async move {
            let bytes: Bytes = (0..40_000u32)
                .map(|j| (j.wrapping_mul(31).wrapping_add(i)) as u8)
                .collect::<Vec<_>>()
                .into();
            let record = server
                .upload_json(ALICE, bytes.clone(), "application/octet-stream", "", 201)
                .await;
            (record["id"].as_str().unwrap().to_string(), sha(&bytes))
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        let (id, digest) = task.await.unwrap();
        let got = server
            .get(ALICE, &format!("/v1/uploads/{id}/content"))
            .await
            .bytes()
            .await
            .unwrap();
        assert_eq!(sha(&got), digest);
        ids.insert(id);
    }
    assert_eq!(ids.len(), 50);
}

async fn clients_see_only_their_own_uploads(backends: Backends) {
    let server = TestServer::start(backends).await;
    let record = server.upload_picture(ALICE, "", 201).await;
    let id = record["id"].as_str().unwrap();
    for path in [
        format!("/v1/uploads/{id}"),
        format!("/v1/uploads/{id}/content"),
    ] {
        assert_eq!(server.get(BOB, &path).await.status(), 404);
    }
    let delete = server.delete(BOB, &format!("/v1/uploads/{id}")).await;
    assert_eq!(delete.status(), 404);
    assert_eq!(
        server
            .get(ALICE, &format!("/v1/uploads/{id}"))
            .await
            .status(),
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn missing_or_wrong_key_is_401() {
    let server = TestServer::start(Backends::Local).await;
    let anonymous = server
        .http
        .post(server.url("/v1/uploads"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(json(anonymous, 401).await["error"]["code"], "unauthorized");
    let wrong = server
        .upload("not-a-real-key-at-all-000", "x", "text/plain", "")
        .await;
    assert_eq!(wrong.status(), 401);
    server.stop().await;
}

#[tokio::test]
async fn over_the_body_limit_is_413_and_a_wrong_type_is_415() {
    let server = TestServer::start(Backends::Local).await;
    let big = vec![0u8; 100 << 10];
    let too_big = server.upload(BOB, big.clone(), "image/png", "").await;
    assert_eq!(json(too_big, 413).await["error"]["code"], "too_large");
    // Without Content-Length the limit is enforced while streaming.
    let stream = futures::stream::iter(
        big.chunks(8 << 10)
            .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let chunked = server
        .upload(BOB, reqwest::Body::wrap_stream(stream), "image/png", "")
        .await;
    assert_eq!(chunked.status(), 413);
    let text = server.upload(BOB, "hello", "text/plain", "").await;
    assert_eq!(json(text, 415).await["error"]["code"], "unsupported_type");
    server.stop().await;
}

#[tokio::test]
async fn the_body_limit_covers_all_files_of_a_multipart_upload() {
    let server = TestServer::start(Backends::Local).await;
    // Bob may send 64 KiB per request; two 40 KiB files are one too many.
    let mut png = fixture_bytes("picture.png").to_vec();
    png.resize(40 << 10, 0);
    let part = |name: &str| {
        reqwest::multipart::Part::bytes(png.clone())
            .file_name(name.to_string())
            .mime_str("image/png")
            .unwrap()
    };
    let form = reqwest::multipart::Form::new()
        .part("a", part("a.png"))
        .part("b", part("b.png"));
    let response = server.upload_form(BOB, form).await;
    assert_eq!(json(response, 413).await["error"]["code"], "too_large");
    // The first file was stored, then removed with the failed request (its
    // post-store artifacts too, once the queue has drained).
    let dir = server.stop_keeping_files().await;
    let stored = walk(&dir.path().join("uploads"));
    assert!(stored.is_empty(), "{stored:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            if e.path().is_dir() {
                walk(&e.path())
            } else {
                vec![e.path()]
            }
        })
        .collect()
}

#[tokio::test]
async fn a_plugin_reject_is_422_naming_the_plugin() {
    let server = TestServer::start(Backends::Local).await;
    let body = server
        .upload_json(ALICE, fixture_bytes("fake-png.png"), "image/png", "", 422)
        .await;
    assert_eq!(body["error"]["code"], "rejected");
    assert_eq!(body["error"]["plugin"], "content-sniff");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("image/png")
    );
    server.stop().await;
}

async fn server_with_runaway(on_failure: FailurePolicy) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(Backends::Local, dir.path());
    let budget = Budget {
        fuel: 20_000_000,
        ..Budget::default()
    };
    config.plugins.push(plugin(
        "infinite-loop",
        HookKind::Processor,
        5,
        on_failure,
        budget,
    ));
    TestServer::with_config(config, dir).await
}

#[tokio::test]
async fn a_fail_open_budget_stop_skips_the_plugin_and_stores_the_upload() {
    let server = server_with_runaway(FailurePolicy::FailOpen).await;
    let bytes = fixture_bytes("picture.png");
    let record = server
        .upload_json(ALICE, bytes.clone(), "image/png", "", 201)
        .await;
    let skipped = &record["skipped"][0];
    assert_eq!(skipped["plugin"], "infinite-loop");
    assert_eq!(skipped["limit"], "fuel");
    // The other plugins still ran.
    assert_eq!(record["metadata"]["sha256"], sha(&bytes));
    server.stop().await;
}

#[tokio::test]
async fn a_fail_closed_budget_stop_is_503_naming_the_plugin() {
    let server = server_with_runaway(FailurePolicy::FailClosed).await;
    let body = server.upload_picture(ALICE, "", 503).await;
    assert_eq!(body["error"]["code"], "plugin_failed");
    assert_eq!(body["error"]["plugin"], "infinite-loop");
    assert!(body["error"]["message"].as_str().unwrap().contains("fuel"));
    server.stop().await;
}

#[tokio::test]
async fn conditional_get_answers_304() {
    let server = TestServer::start(Backends::Local).await;
    let record = server.upload_picture(ALICE, "", 201).await;
    let path = format!("/v1/uploads/{}/content", record["id"].as_str().unwrap());
    let etag = format!("\"{}\"", record["sha256"].as_str().unwrap());
    let r = server
        .http
        .get(server.url(&path))
        .bearer_auth(ALICE)
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    server.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let server = TestServer::start(Backends::Local).await;
    assert_eq!(
        json(server.get(ALICE, "/healthz").await, 200).await["status"],
        "ok"
    );
    let ready = json(server.get(ALICE, "/readyz").await, 200).await;
    assert_eq!(ready["storage"]["status"], "ok");
    assert_eq!(ready["cache"]["backend"], "memory");
    server.upload_picture(ALICE, "&wait=true", 201).await;
    let metrics = server.metrics().await;
    for needle in [
        "airlock_uploads_total{status=\"201\"} 1",
        "airlock_upload_duration_seconds_count 1",
        "airlock_plugin_invocations_total{plugin=\"sha256\",outcome=\"ok\"} 1",
        "airlock_plugin_cache_ops_total{plugin=\"sha256\",op=\"add\"} 1",
        "airlock_plugin_invocations_total{plugin=\"thumbnail\",outcome=\"ok\"} 1",
        "airlock_plugin_fuel_total{plugin=\"sha256\"}",
        "airlock_plugin_active{plugin=\"thumbnail\"} 1",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    server.stop().await;
}

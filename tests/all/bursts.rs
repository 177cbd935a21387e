//! Load alone never skips a plugin: under a burst, uploads wait for a
//! processor's bulkhead slot (up to their own deadline) instead of being
//! stored without it, so no GPS location slips through a busy `exif-strip`;
//! when no slot frees in time the upload gets 503 `plugin_busy` with
//! `Retry-After`, and nothing is stored. A hostile plugin still cannot hold
//! the others: its budget bounds each turn and its breaker ends it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::config::Config;
use airlock::supervisor::Containment;
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::Value;

use crate::common::*;
use crate::harness::*;

/// `n` uploads of the GPS-tagged photo from `clients` clients at once; the
/// responses' statuses and bodies.
async fn burst(server: &Arc<TestServer>, n: usize, clients: usize) -> Vec<(u16, Value)> {
    let photo = fixture_bytes("photo-with-gps.jpg");
    futures::stream::iter((0..n).map(|_| {
        let server = Arc::clone(server);
        let photo = photo.clone();
        async move {
            let response = server.upload(ALICE, photo, "image/jpeg", "").await;
            let status = response.status().as_u16();
            let retry_after = response.headers().get("retry-after").cloned();
            let mut body: Value = response.json().await.unwrap();
            if let Some(value) = retry_after {
                body["retry_after"] = Value::from(value.to_str().unwrap());
            }
            (status, body)
        }
    }))
    .buffer_unordered(clients)
    .collect()
    .await
}

/// The standard config with `exif-strip` behind a 2-slot bulkhead that
/// would refuse after 1 ms of waiting under the old rule, and fail-open:
/// the worst case for a privacy step under load.
fn tight_exif_strip(dir: &std::path::Path) -> Config {
    let mut config = config(Backends::Local, dir);
    config.server.max_concurrent_uploads = 64;
    for plugin in &mut config.plugins {
        if plugin.name == "exif-strip" {
            plugin.containment = Containment {
                max_concurrency: 2,
                max_wait_ms: 1,
                ..Containment::default()
            };
        }
    }
    config
}

async fn stored_bytes(server: &TestServer, id: &str) -> Bytes {
    server
        .get(ALICE, &format!("/v1/uploads/{id}/content"))
        .await
        .bytes()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_64_clients_never_stores_a_photo_with_its_gps_location() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(TestServer::with_config(tight_exif_strip(dir.path()), dir).await);
    let results = burst(&server, 64, 64).await;
    for (status, record) in &results {
        assert_eq!(*status, 201, "{record}");
        assert!(
            record.get("skipped").is_none(),
            "a plugin was skipped: {record}"
        );
        assert_eq!(record["metadata"]["exif-stripped"], "true", "{record}");
        let stored = stored_bytes(&server, record["id"].as_str().unwrap()).await;
        assert!(
            !stored.windows(6).any(|w| w == b"Exif\0\0"),
            "stored with its EXIF (GPS) block: {record}"
        );
    }
    let invocations = server
        .metric("airlock_plugin_invocations_total{plugin=\"exif-strip\"")
        .await;
    assert_eq!(invocations, 64.0, "every photo went through exif-strip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_plugin_cannot_hold_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tight_exif_strip(dir.path());
    // Spins for its whole 300 ms at every turn, one at a time.
    let spinner = spinner(300, 3);
    config.plugins.push(spinner);
    let server = Arc::new(TestServer::with_config(config, dir).await);
    let started = Instant::now();
    let results = burst(&server, 32, 32).await;
    let took = started.elapsed();
    for (status, record) in &results {
        assert_eq!(*status, 201, "{record}");
        assert_eq!(record["metadata"]["exif-stripped"], "true", "{record}");
        let skipped = record["skipped"].as_array().unwrap();
        assert_eq!(skipped.len(), 1, "{record}");
        assert_eq!(skipped[0]["plugin"], "infinite-loop", "{record}");
    }
    // Three turns of 300 ms, then the breaker: the burst is not held for
    // 32 turns (9.6 s).
    let quarantined = results
        .iter()
        .filter(|(_, r)| {
            r["skipped"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("quarantined")
        })
        .count();
    assert!(
        quarantined >= 29 - 3,
        "{quarantined} skipped as quarantined"
    );
    assert!(took < Duration::from_secs(8), "the burst took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_slot_within_the_uploads_deadline_is_503_plugin_busy_and_nothing_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(Backends::Local, dir.path());
    config.server.upload_deadline_seconds = 1;
    config.admin.token = "admin-token-0123456789abcdef".into();
    let slow = spinner(2_500, 100);
    config.plugins.push(slow);
    let server = Arc::new(TestServer::with_config(config, dir).await);
    let results = burst(&server, 2, 2).await;
    let mut statuses: Vec<u16> = results.iter().map(|(s, _)| *s).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 503], "{results:?}");
    let (_, busy) = results.iter().find(|(s, _)| *s == 503).unwrap();
    assert_eq!(busy["error"]["code"], "plugin_busy", "{busy}");
    assert_eq!(busy["error"]["plugin"], "infinite-loop", "{busy}");
    assert_eq!(busy["retry_after"], "5", "{busy}");
    // Only the upload that had its turn is stored.
    let stored = crate::served::files_under(&server.dir.path().join("uploads"))
        .into_iter()
        .filter(|p| p.ends_with("record.json"))
        .count();
    assert_eq!(stored, 1);
}

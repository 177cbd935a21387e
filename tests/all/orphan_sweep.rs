//! The orphan sweep on both stores (local disk and the real S3 server):
//! objects no record owns go once past the grace period, whole uploads and
//! young objects stay. The crash that leaves such objects is in `faults`.

use std::time::Duration;

use airlock::metrics::Metrics;
use airlock::storage::{BlobStore, LocalStore, S3Store, StorageError};
use airlock::upload::{SweepReport, keys, sweep};

use crate::harness::s3_settings;

fn id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn put(store: &dyn BlobStore, key: &str) {
    store
        .put_bytes(key, b"bytes".to_vec().into(), "application/octet-stream")
        .await
        .unwrap();
}

async fn exists(store: &dyn BlobStore, key: &str) -> bool {
    match store.get_bytes(key).await {
        Ok(_) => true,
        Err(StorageError::NotFound(_)) => false,
        Err(err) => panic!("{key}: {err}"),
    }
}

async fn sweeps_only_what_no_record_owns(store: &dyn BlobStore) {
    let (whole, half, bare, deleted) = (id(), id(), id(), id());
    let kept = [
        keys::content(&whole),
        keys::derived(&whole, "thumbnail"),
        keys::record(&whole),
    ];
    let orphans = [
        keys::content(&half),
        keys::derived(&half, "thumbnail"),
        keys::content(&bare),
        keys::tombstone(&deleted),
    ];
    for key in kept.iter().chain(&orphans) {
        put(store, key).await;
    }
    let metrics = Metrics::new();

    // Young objects are left alone: an upload may be between its writes.
    let report = sweep(store, Duration::from_secs(3600), &metrics)
        .await
        .unwrap();
    assert_eq!(report, SweepReport::default());
    for key in kept.iter().chain(&orphans) {
        assert!(exists(store, key).await, "{key} swept while young");
    }

    let report = sweep(store, Duration::ZERO, &metrics).await.unwrap();
    assert_eq!(
        report,
        SweepReport {
            content: 2,
            derived: 1,
            tombstones: 1,
            temp_files: 0,
        }
    );
    for key in &kept {
        assert!(
            exists(store, key).await,
            "{key} of a whole upload was swept"
        );
    }
    for key in &orphans {
        assert!(!exists(store, key).await, "{key} survived the sweep");
    }
    let text = metrics.encode();
    assert!(
        text.contains("airlock_orphans_swept_total{kind=\"content\"} 2"),
        "{text}"
    );

    // Nothing left to do.
    let report = sweep(store, Duration::ZERO, &metrics).await.unwrap();
    assert_eq!(report, SweepReport::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).await.unwrap();
    sweeps_only_what_no_record_owns(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3() {
    let store = S3Store::connect(&s3_settings()).await.unwrap();
    sweeps_only_what_no_record_owns(&store).await;
}

/// A local write cut short by a crash leaves a `.tmp-…` file beside its
/// destination (and the staging and the job journal write the same way):
/// the sweep removes those past the grace period, anywhere in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_stale_temp_files_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).await.unwrap();
    let whole = id();
    put(&store, &keys::record(&whole)).await;
    let temps = [
        dir.path().join(format!("uploads/{whole}/.tmp-cut-short")),
        dir.path().join(".jobs/.tmp-job"),
        dir.path().join(".tus/.tmp-state"),
    ];
    for temp in &temps {
        std::fs::create_dir_all(temp.parent().unwrap()).unwrap();
        std::fs::write(temp, b"half").unwrap();
    }
    let metrics = Metrics::new();
    let report = sweep(&store, Duration::from_secs(3600), &metrics)
        .await
        .unwrap();
    assert_eq!(report.temp_files, 0, "young temp files are left alone");
    let report = sweep(&store, Duration::ZERO, &metrics).await.unwrap();
    assert_eq!(report.temp_files, 3);
    for temp in &temps {
        assert!(!temp.exists(), "{} survived", temp.display());
    }
    assert!(exists(&store, &keys::record(&whole)).await);
    assert!(
        metrics
            .encode()
            .contains("airlock_orphans_swept_total{kind=\"temp\"} 3")
    );
}

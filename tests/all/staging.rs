//! Staged resumable uploads, below the protocol, on local disk and on the
//! real S3 server: appends kept or discarded (also across S3 parts), the
//! offset checked, completion into the store, partial uploads read back,
//! removal, listing.

use std::sync::Arc;

use airlock::storage::{
    BlobStore, Body, LocalStaging, LocalStore, S3Settings, S3Staging, S3Store, Staging,
    StorageError,
};
use bytes::Bytes;
use futures::StreamExt;

use crate::harness::s3_settings;

const MIB: usize = 1 << 20;

/// A store and its staging, both backends.
async fn backends() -> Vec<(
    Arc<dyn BlobStore>,
    Arc<dyn Staging>,
    Option<tempfile::TempDir>,
)> {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalStore::open(dir.path()).await.unwrap();
    let local_staging = LocalStaging::open(local.clone()).await.unwrap();
    // The smallest part S3 takes, so that a few MiB cross parts.
    let settings = S3Settings {
        part_size_bytes: 5 * MIB as u64,
        ..s3_settings()
    };
    let s3 = S3Store::connect(&settings).await.unwrap();
    vec![
        (Arc::new(local), Arc::new(local_staging), Some(dir)),
        (Arc::new(s3.clone()), Arc::new(S3Staging::new(s3)), None),
    ]
}

fn bytes(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) ^ (i >> 10) as u8)
        .collect::<Vec<_>>()
        .into()
}

/// `chunks` as an append body.
fn body(chunks: impl IntoIterator<Item = Bytes>) -> Body<'static> {
    Box::pin(futures::stream::iter(
        chunks.into_iter().map(Ok).collect::<Vec<_>>(),
    ))
}

/// `chunks`, then an error: a client that went away.
fn cut(chunks: impl IntoIterator<Item = Bytes>) -> Body<'static> {
    let mut items: Vec<std::io::Result<Bytes>> = chunks.into_iter().map(Ok).collect();
    items.push(Err(std::io::Error::other("gone")));
    Box::pin(futures::stream::iter(items))
}

async fn read_all(store: &dyn BlobStore, key: &str) -> Vec<u8> {
    let mut object = store.get(key, None).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = object.body.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_are_kept_or_discarded_then_complete_into_the_store() {
    for (store, staging, _dir) in backends().await {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let target = format!("uploads/{id}/content");
        staging
            .create(&id, Bytes::from_static(b"{\"who\":\"me\"}"), Some(&target))
            .await
            .unwrap();
        let a = bytes(3 * MIB, 1);
        let b = bytes(4 * MIB, 2);
        let c = bytes(6 * MIB + 123, 3);
        // 3 MiB kept (a tail on S3).
        let kept = staging.append(&id, 0, body([a.clone()])).await.unwrap();
        assert_eq!(kept.keep().await.unwrap(), 3 * MIB as u64);
        // 4 MiB more cross a 5 MiB part, then are discarded (a checksum
        // that did not match): the upload stays at 3 MiB.
        let dropped = staging
            .append(&id, 3 * MIB as u64, body([b.clone()]))
            .await
            .unwrap();
        assert_eq!(dropped.len(), 4 * MIB as u64);
        dropped.discard().await;
        let staged = staging.load(&id).await.unwrap();
        assert_eq!(staged.offset, 3 * MIB as u64, "{}", store.kind());
        assert_eq!(staged.info.as_ref(), b"{\"who\":\"me\"}");
        // An append at another offset is a conflict.
        let wrong = staging.append(&id, 0, body([c.clone()])).await;
        assert!(matches!(wrong, Err(StorageError::Conflict(_))));
        // Cut half way: what came before the cut is there to keep.
        let half = staging
            .append(
                &id,
                3 * MIB as u64,
                cut([c.slice(..MIB), c.slice(MIB..3 * MIB)]),
            )
            .await
            .unwrap();
        assert_eq!(half.len(), 3 * MIB as u64);
        assert_eq!(half.keep().await.unwrap(), 6 * MIB as u64);
        // Discarded again, now that S3 has a multipart upload with a part:
        // its new part 2 is never listed, and is overwritten below.
        let dropped = staging
            .append(&id, 6 * MIB as u64, body([bytes(6 * MIB, 4)]))
            .await
            .unwrap();
        dropped.discard().await;
        let rest = staging
            .append(&id, 6 * MIB as u64, body([c.slice(3 * MIB..)]))
            .await
            .unwrap();
        let end = rest.keep().await.unwrap();
        assert_eq!(end, (9 * MIB + 123) as u64);
        staging.complete(&id).await.unwrap();
        // Again: nothing changes.
        staging.complete(&id).await.unwrap();
        let mut expected = a.to_vec();
        expected.extend_from_slice(&c);
        let stored = read_all(store.as_ref(), &target).await;
        assert_eq!(stored.len(), expected.len(), "{}", store.kind());
        assert!(
            stored == expected,
            "the stored bytes differ ({})",
            store.kind()
        );
        staging.remove(&id).await.unwrap();
        assert!(matches!(
            staging.load(&id).await,
            Err(StorageError::NotFound(_))
        ));
        // The target is the caller's now: removing the staging left it.
        assert_eq!(
            read_all(store.as_ref(), &target).await.len(),
            expected.len()
        );
        store.delete(&target).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_upload_is_read_back_and_removed_whole() {
    for (store, staging, _dir) in backends().await {
        let id = uuid::Uuid::new_v4().simple().to_string();
        staging
            .create(&id, Bytes::from_static(b"{}"), None)
            .await
            .unwrap();
        let part = bytes(5 * MIB + 7, 9);
        let appended = staging.append(&id, 0, body([part.clone()])).await.unwrap();
        appended.keep().await.unwrap();
        // Not complete yet: not readable.
        assert!(staging.read(&id).await.is_err());
        staging.complete(&id).await.unwrap();
        let staged = staging.load(&id).await.unwrap();
        assert!(staged.completed);
        assert_eq!(staged.offset, part.len() as u64);
        let mut back = Vec::new();
        let mut stream = staging.read(&id).await.unwrap();
        while let Some(chunk) = stream.next().await {
            back.extend_from_slice(&chunk.unwrap());
        }
        assert!(back == part.to_vec(), "{}", store.kind());
        // Listed while it exists, gone (bytes too) once removed.
        let mut listed = Vec::new();
        let mut pages = staging.list();
        while let Some(page) = pages.next().await {
            listed.extend(page.unwrap().into_iter().map(|l| l.key));
        }
        drop(pages);
        assert!(listed.contains(&id), "{listed:?}");
        staging.remove(&id).await.unwrap();
        assert!(matches!(
            staging.load(&id).await,
            Err(StorageError::NotFound(_))
        ));
        assert!(staging.read(&id).await.is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_that_are_not_one_segment_are_refused() {
    for (_store, staging, _dir) in backends().await {
        for id in ["../x", "a/b", ".hidden", ""] {
            let created = staging.create(id, Bytes::new(), None).await;
            assert!(matches!(created, Err(StorageError::InvalidKey(_))), "{id}");
        }
    }
}

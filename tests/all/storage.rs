//! Both blob stores pass one suite: [`LocalStore`] on a temporary directory
//! and [`S3Store`] on a real Garage node on 127.0.0.1, reached through the
//! `AIRLOCK_TEST_S3_*` variables that `scripts/s3-server.sh start` prints.
//! Each test writes under its own random key prefix, so they share a bucket.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use airlock::storage::{BlobStore, LocalStore, Object, S3Settings, S3Store, StorageError};
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::common::{eventually, sha};

const MIB: usize = 1024 * 1024;
const BINARY: &str = "application/octet-stream";

// ---------------------------------------------------------------- helpers

/// A fresh key prefix, so that tests never see each other's objects.
fn prefix() -> String {
    format!("t-{}", uuid::Uuid::new_v4().simple())
}

/// `len` deterministic pseudo-random bytes (xorshift), different per seed.
fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Reads a whole body, checking it is as long as announced.
async fn read_all(object: Object) -> Vec<u8> {
    let announced = object.len;
    let mut body = object.body;
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.expect("body chunk"));
    }
    assert_eq!(out.len() as u64, announced, "body length != Object::len");
    out
}

/// Streams a body through SHA-256 without keeping it: (length, digest).
async fn hash_stream(object: Object) -> (u64, String) {
    let announced = object.len;
    let mut body = object.body;
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("body chunk");
        len += chunk.len() as u64;
        hasher.update(&chunk);
    }
    assert_eq!(len, announced, "body length != Object::len");
    (len, hex::encode(hasher.finalize()))
}

/// Writes `len` pseudo-random bytes to a new file in `dir`, 1 MiB at a
/// time; returns its path and SHA-256.
fn write_file(dir: &Path, name: &str, seed: u64, len: usize) -> (PathBuf, String) {
    use std::io::Write;
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path).expect("create source file");
    let mut hasher = Sha256::new();
    let mut written = 0;
    let mut chunk_seed = seed;
    while written < len {
        let chunk = pseudo_random(chunk_seed, MIB.min(len - written));
        hasher.update(&chunk);
        file.write_all(&chunk).expect("write source file");
        written += chunk.len();
        chunk_seed += 1;
    }
    file.sync_all().expect("sync source file");
    (path, hex::encode(hasher.finalize()))
}

async fn get(store: &dyn BlobStore, key: &str, range: Option<Range<u64>>) -> Object {
    store
        .get(key, range.clone())
        .await
        .unwrap_or_else(|e| panic!("{} get {key} {range:?}: {e}", store.kind()))
}

async fn put(store: &dyn BlobStore, key: &str, bytes: impl Into<Bytes>) {
    store
        .put_bytes(key, bytes.into(), BINARY)
        .await
        .unwrap_or_else(|e| panic!("{} put_bytes {key}: {e}", store.kind()));
}

fn assert_not_found<T>(result: Result<T, StorageError>, what: &str) {
    match result {
        Err(StorageError::NotFound(_)) => {}
        Err(e) => panic!("{what}: expected NotFound, got {e}"),
        Ok(_) => panic!("{what}: expected NotFound, got success"),
    }
}

fn assert_invalid_key<T>(result: Result<T, StorageError>, what: &str) {
    match result {
        Err(StorageError::InvalidKey(_)) => {}
        Err(e) => panic!("{what}: expected InvalidKey, got {e}"),
        Ok(_) => panic!("{what}: expected InvalidKey, got success"),
    }
}

async fn local_store() -> (tempfile::TempDir, LocalStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(&dir.path().join("blobs"))
        .await
        .expect("open local store");
    (dir, store)
}

/// A variable the test S3 server provides.
fn s3_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the S3 tests need the test Garage node. Run the test \
             command (scripts/test.sh), or `eval \"$(scripts/s3-server.sh start)\"` \
             (after scripts/install-s3-server.sh) and rerun the tests"
        )
    })
}

/// Settings for the test Garage node, with small multipart sizes so that a
/// 20 MiB file goes up in 5 MiB parts.
fn s3_settings() -> S3Settings {
    S3Settings {
        bucket: s3_env("AIRLOCK_TEST_S3_BUCKET"),
        region: s3_env("AIRLOCK_TEST_S3_REGION"),
        endpoint: Some(s3_env("AIRLOCK_TEST_S3_ENDPOINT")),
        force_path_style: true,
        access_key_id: Some(s3_env("AIRLOCK_TEST_S3_ACCESS_KEY_ID")),
        secret_access_key: Some(s3_env("AIRLOCK_TEST_S3_SECRET_ACCESS_KEY")),
        prefix: "storage-tests/".into(),
        multipart_threshold_bytes: 5 * MIB as u64,
        part_size_bytes: 5 * MIB as u64,
        timeout_ms: 30_000,
    }
}

async fn s3_store() -> S3Store {
    S3Store::connect(&s3_settings())
        .await
        .expect("connect to the test S3 server")
}

// ------------------------------------------------------ the shared suite

/// Runs each shared test on both backends: `storage::local::NAME` and
/// `storage::s3::NAME`.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_dir, store) = super::local_store().await;
                    super::$name(&store, &super::prefix()).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let store = super::s3_store().await;
                    super::$name(&store, &super::prefix()).await;
                }
            )*
        }
    };
}

suite!(
    round_trip_bytes,
    round_trip_file,
    round_trip_large_file,
    ranges,
    empty_ranges_and_empty_objects,
    missing_objects_are_not_found,
    delete_is_idempotent,
    sibling_keys_are_independent,
    overwrite_replaces_the_whole_object,
    concurrent_readers_see_old_or_new,
    invalid_keys_are_refused,
    put_file_of_a_missing_file_fails,
    ping_answers,
    listing_is_in_key_order,
);

/// Every key under a prefix, in the order `list` gives them.
async fn list_keys(store: &dyn BlobStore, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut pages = store.list(prefix);
    while let Some(page) = pages.next().await {
        keys.extend(page.expect("list page").into_iter().map(|l| l.key));
    }
    keys
}

async fn listing_is_in_key_order(store: &dyn BlobStore, p: &str) {
    // `-` and `.` sort before `/`: a directory's keys come after a sibling
    // file whose name extends the directory's.
    let mut keys: Vec<String> = ["b", "a/y/z", "a-b", "a/x", "a.c", "ab"]
        .iter()
        .map(|k| format!("{p}/{k}"))
        .collect();
    for key in &keys {
        put(store, key, b"x".to_vec()).await;
    }
    keys.sort();
    assert_eq!(list_keys(store, &format!("{p}/")).await, keys);
    assert_eq!(list_keys(store, &format!("{p}/a/")).await, keys[2..4]);
    assert!(list_keys(store, &format!("{p}/none/")).await.is_empty());
    let refused = store.list("no-slash").next().await.expect("one item");
    assert_invalid_key(refused, "a prefix without its `/`");
}

async fn round_trip_bytes(store: &dyn BlobStore, p: &str) {
    let cases = [
        (format!("{p}/small.txt"), b"hello, airlock\n".to_vec()),
        (
            format!("{p}/nested/deeper/still/blob.bin"),
            pseudo_random(1, 300_000),
        ),
        (format!("{p}/odd_name-1.2.3"), pseudo_random(2, 4097)),
    ];
    for (key, data) in &cases {
        put(store, key, data.clone()).await;
    }
    for (key, data) in &cases {
        let object = get(store, key, None).await;
        assert_eq!(object.total_size, data.len() as u64, "{key}: total_size");
        let body = read_all(object).await;
        assert_eq!(sha(&body), sha(data), "{key}: content differs");
        let whole = store.get_bytes(key).await.expect("get_bytes");
        assert_eq!(sha(&whole), sha(data), "{key}: get_bytes differs");
    }
}

async fn round_trip_file(store: &dyn BlobStore, p: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    // Below the multipart threshold: one streamed PutObject on S3.
    let (path, digest) = write_file(dir.path(), "upload", 7, MIB + 12_345);
    let key = format!("{p}/file.bin");
    store.put_file(&key, &path, BINARY).await.expect("put_file");
    let object = get(store, &key, None).await;
    assert_eq!(object.total_size, (MIB + 12_345) as u64);
    assert_eq!(hash_stream(object).await, ((MIB + 12_345) as u64, digest));
}

async fn round_trip_large_file(store: &dyn BlobStore, p: &str) {
    const LEN: usize = 20 * MIB;
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, digest) = write_file(dir.path(), "large", 42, LEN);
    let key = format!("{p}/large.bin");
    let started = Instant::now();
    store
        .put_file(&key, &path, BINARY)
        .await
        .expect("put_file of 20 MiB");
    eprintln!(
        "{}: put_file 20 MiB in {:?}",
        store.kind(),
        started.elapsed()
    );
    let object = get(store, &key, None).await;
    assert_eq!(object.total_size, LEN as u64);
    assert_eq!(hash_stream(object).await, (LEN as u64, digest));

    // A range across the boundary of the first two 5 MiB parts.
    let boundary = 5 * MIB as u64;
    let object = get(store, &key, Some(boundary - 100..boundary + 100)).await;
    assert_eq!((object.len, object.total_size), (200, LEN as u64));
    let expected: Vec<u8> = [
        &pseudo_random(42 + 4, MIB)[MIB - 100..],
        &pseudo_random(42 + 5, MIB)[..100],
    ]
    .concat();
    assert_eq!(read_all(object).await, expected);
}

async fn ranges(store: &dyn BlobStore, p: &str) {
    let key = format!("{p}/ranged");
    let data = pseudo_random(3, 1000);
    put(store, &key, data.clone()).await;

    let cases: [(Range<u64>, Range<usize>); 6] = [
        (0..10, 0..10),         // first bytes
        (0..1, 0..1),           // a single byte
        (100..200, 100..200),   // middle
        (990..5000, 990..1000), // end clamped to the size
        (999..1000, 999..1000), // the last byte
        (0..u64::MAX, 0..1000), // everything
    ];
    for (asked, expected) in cases {
        let object = get(store, &key, Some(asked.clone())).await;
        assert_eq!(
            (object.len, object.total_size),
            (expected.len() as u64, 1000),
            "range {asked:?}: len / total_size"
        );
        assert_eq!(read_all(object).await, &data[expected], "range {asked:?}");
    }
    for past in [1000..1010, 1000..u64::MAX, 5000..6000] {
        match store.get(&key, Some(past.clone())).await {
            Err(StorageError::RangeNotSatisfiable { size }) => assert_eq!(size, 1000),
            Err(e) => panic!("range {past:?}: expected RangeNotSatisfiable, got {e}"),
            Ok(o) => panic!(
                "range {past:?}: expected RangeNotSatisfiable, got {} bytes",
                o.len
            ),
        }
    }
}

async fn empty_ranges_and_empty_objects(store: &dyn BlobStore, p: &str) {
    let key = format!("{p}/some");
    put(store, &key, pseudo_random(4, 100)).await;
    // An empty range inside the object is empty, not an error.
    #[allow(clippy::reversed_empty_ranges)] // on purpose
    let inverted = 50..20;
    for empty in [10..10, inverted] {
        let object = get(store, &key, Some(empty.clone())).await;
        assert_eq!((object.len, object.total_size), (0, 100), "range {empty:?}");
        assert!(read_all(object).await.is_empty());
    }
    // An empty object reads as empty, whole or by any range.
    let empty_key = format!("{p}/empty");
    put(store, &empty_key, Bytes::new()).await;
    for range in [None, Some(0..10), Some(5..6)] {
        let object = get(store, &empty_key, range.clone()).await;
        assert_eq!((object.len, object.total_size), (0, 0), "range {range:?}");
        assert!(read_all(object).await.is_empty());
    }
    assert!(
        store
            .get_bytes(&empty_key)
            .await
            .expect("get_bytes")
            .is_empty()
    );
}

async fn missing_objects_are_not_found(store: &dyn BlobStore, p: &str) {
    let key = format!("{p}/never-written");
    assert_not_found(store.get(&key, None).await, "get");
    assert_not_found(store.get(&key, Some(0..10)).await, "ranged get");
    assert_not_found(store.get(&key, Some(5..5)).await, "empty-range get");
    assert_not_found(store.get_bytes(&key).await, "get_bytes");
    // A "directory" holding other keys is not an object either.
    put(store, &format!("{p}/dir/child"), &b"x"[..]).await;
    assert_not_found(
        store.get(&format!("{p}/dir"), None).await,
        "get of a prefix",
    );
    assert_not_found(
        store.get_bytes(&format!("{p}/dir")).await,
        "get_bytes of a prefix",
    );
}

async fn delete_is_idempotent(store: &dyn BlobStore, p: &str) {
    let key = format!("{p}/a/b/gone");
    store.delete(&key).await.expect("delete of a missing key");
    put(store, &key, &b"soon gone"[..]).await;
    store.delete(&key).await.expect("delete");
    assert_not_found(store.get(&key, None).await, "get after delete");
    store.delete(&key).await.expect("second delete");
    // The key can be written again after its directories went away.
    put(store, &key, &b"back"[..]).await;
    assert_eq!(
        &store.get_bytes(&key).await.expect("get_bytes")[..],
        b"back"
    );
}

async fn sibling_keys_are_independent(store: &dyn BlobStore, p: &str) {
    let (a, b) = (format!("{p}/dir/a"), format!("{p}/dir/b"));
    put(store, &a, &b"A"[..]).await;
    put(store, &b, &b"B"[..]).await;
    store.delete(&a).await.expect("delete a");
    assert_not_found(store.get_bytes(&a).await, "a after delete");
    assert_eq!(&store.get_bytes(&b).await.expect("b survives")[..], b"B");
}

async fn overwrite_replaces_the_whole_object(store: &dyn BlobStore, p: &str) {
    let key = format!("{p}/over");
    put(store, &key, pseudo_random(5, 200_000)).await;
    let shorter = pseudo_random(6, 1_000);
    put(store, &key, shorter.clone()).await;
    let object = get(store, &key, None).await;
    assert_eq!(object.total_size, 1_000, "no tail of the old object");
    assert_eq!(read_all(object).await, shorter);

    // Overwriting by put_file too.
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, digest) = write_file(dir.path(), "new", 8, 300_000);
    store.put_file(&key, &path, BINARY).await.expect("put_file");
    assert_eq!(
        hash_stream(get(store, &key, None).await).await,
        (300_000, digest)
    );
}

async fn concurrent_readers_see_old_or_new(store: &dyn BlobStore, p: &str) {
    let key = format!("{p}/contended");
    let old = Bytes::from(vec![b'o'; 256 * 1024]);
    let new = Bytes::from(vec![b'n'; 384 * 1024]);
    put(store, &key, old.clone()).await;
    let done = AtomicBool::new(false);
    let writer = async {
        for i in 0..16 {
            let next = if i % 2 == 0 { &new } else { &old };
            put(store, &key, next.clone()).await;
        }
        done.store(true, Ordering::SeqCst);
    };
    let reader = async {
        let mut reads = 0;
        while !done.load(Ordering::SeqCst) || reads < 4 {
            let body = read_all(get(store, &key, None).await).await;
            assert!(
                body == old || body == new,
                "a reader saw a mix of two writes ({} bytes)",
                body.len()
            );
            reads += 1;
        }
        reads
    };
    let ((), reads) = tokio::join!(writer, reader);
    assert!(reads >= 4);
    // The last write wins.
    assert_eq!(store.get_bytes(&key).await.expect("get_bytes"), old);
}

async fn invalid_keys_are_refused(store: &dyn BlobStore, p: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, _) = write_file(dir.path(), "source", 9, 10);
    let bad = [
        String::new(),
        "..".into(),
        format!("{p}/../escape"),
        format!("{p}/./x"),
        "../outside".into(),
        format!("{p}//double"),
        format!("{p}/trailing/"),
        format!("/{p}/absolute"),
        format!("{p}/.hidden"),
        format!("{p}/sp ace"),
        format!("{p}/back\\slash"),
        format!("{p}/nul\0"),
        format!("{p}/ünïcode"),
    ];
    for key in &bad {
        assert_invalid_key(
            store.put_bytes(key, Bytes::from_static(b"x"), BINARY).await,
            key,
        );
        assert_invalid_key(store.put_file(key, &path, BINARY).await, key);
        assert_invalid_key(store.get(key, None).await, key);
        assert_invalid_key(store.get(key, Some(0..1)).await, key);
        assert_invalid_key(store.get_bytes(key).await, key);
        assert_invalid_key(store.delete(key).await, key);
    }
    assert!(
        path.exists(),
        "a refused put_file must leave the file alone"
    );
}

async fn put_file_of_a_missing_file_fails(store: &dyn BlobStore, p: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = format!("{p}/from-nowhere");
    match store
        .put_file(&key, &dir.path().join("absent"), BINARY)
        .await
    {
        Err(StorageError::Unavailable { .. }) => {}
        other => panic!("expected Unavailable, got {:?}", other.err()),
    }
    assert_not_found(store.get(&key, None).await, "nothing was stored");
}

async fn ping_answers(store: &dyn BlobStore, _p: &str) {
    store.ping().await.expect("ping");
}

// ------------------------------------------------------ local disk only

mod local_disk {
    use super::*;

    /// Every file under `dir`, relative, sorted.
    fn files_under(dir: &Path) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).expect("read_dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    walk(root, &path, out);
                } else {
                    let rel = path.strip_prefix(root).expect("under root");
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out.sort();
        out
    }

    /// Deletes prune the directories they empty, up to the root; writes
    /// racing them under the same parents still land (the directories are
    /// made again), however the two interleave.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn writes_racing_deletes_that_prune_directories_all_land() {
        let (_dir, store) = local_store().await;
        let store = std::sync::Arc::new(store);
        let workers: Vec<_> = (0..8)
            .map(|w| {
                let store = std::sync::Arc::clone(&store);
                tokio::spawn(async move {
                    for i in 0..400 {
                        // Shared parents: one writer's delete prunes what
                        // another is about to write into.
                        let key = format!("race/shared/{w}-{i}");
                        store
                            .put_bytes(&key, Bytes::from_static(b"x"), BINARY)
                            .await
                            .unwrap_or_else(|e| panic!("{key}: {e}"));
                        store.delete(&key).await.expect("delete");
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.expect("worker");
        }
    }

    #[tokio::test]
    async fn open_creates_the_root_and_path_of_maps_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("x/y/z");
        let store = LocalStore::open(&root).await.expect("open");
        assert!(root.is_dir());
        assert_eq!(store.kind(), "local");
        let path = store.path_of("up/abc/content").expect("path_of");
        assert_eq!(path, store.root().join("up/abc/content"));
        assert!(path.starts_with(root.canonicalize().expect("canonical root")));
        assert_invalid_key(store.path_of("up/../../etc/passwd"), "path_of");
        // Opening an existing root keeps its objects.
        store
            .put_bytes("k", Bytes::from_static(b"kept"), BINARY)
            .await
            .expect("put");
        let again = LocalStore::open(&root).await.expect("reopen");
        assert_eq!(&again.get_bytes("k").await.expect("get_bytes")[..], b"kept");
    }

    #[tokio::test]
    async fn put_file_moves_the_file_and_leaves_no_temporaries() {
        let (dir, store) = local_store().await;
        let (path, digest) = write_file(dir.path(), "incoming", 10, 100_000);
        store
            .put_file("up/1/content", &path, BINARY)
            .await
            .expect("put_file");
        assert!(!path.exists(), "same filesystem: the file is renamed");
        for i in 0..5 {
            store
                .put_bytes("up/1/record", Bytes::from(vec![i; 10]), BINARY)
                .await
                .expect("put_bytes");
        }
        assert_eq!(files_under(store.root()), ["up/1/content", "up/1/record"]);
        let object = store.get("up/1/content", None).await.expect("get");
        assert_eq!(hash_stream(object).await, (100_000, digest));
    }

    #[tokio::test]
    async fn put_file_across_filesystems_copies() {
        // /dev/shm is a tmpfs, a different filesystem from the temp dir on
        // most Linux machines: the rename fails with EXDEV and the store
        // copies instead. Elsewhere this is one more rename test.
        let shm = Path::new("/dev/shm");
        let (_dir, store) = local_store().await;
        let source_dir = if shm.is_dir() {
            tempfile::tempdir_in(shm).expect("tempdir in /dev/shm")
        } else {
            tempfile::tempdir().expect("tempdir")
        };
        let (path, digest) = write_file(source_dir.path(), "incoming", 11, 3 * MIB + 1);
        store
            .put_file("up/2/content", &path, BINARY)
            .await
            .expect("put_file across filesystems");
        assert!(!path.exists(), "the source is moved (copied, then removed)");
        assert_eq!(files_under(store.root()), ["up/2/content"]);
        let object = store.get("up/2/content", None).await.expect("get");
        assert_eq!(hash_stream(object).await, ((3 * MIB + 1) as u64, digest));
    }

    #[tokio::test]
    async fn delete_removes_empty_directories_up_to_the_root() {
        let (_dir, store) = local_store().await;
        let root = store.root().to_path_buf();
        put(&store, "a/b/c/one", &b"1"[..]).await;
        put(&store, "a/two", &b"2"[..]).await;
        store.delete("a/b/c/one").await.expect("delete");
        assert!(
            !root.join("a/b").exists(),
            "empty a/b/c and a/b are removed"
        );
        assert!(root.join("a").is_dir(), "a still holds a/two");
        store.delete("a/two").await.expect("delete");
        assert!(!root.join("a").exists());
        assert!(root.is_dir(), "the root stays");
        store.ping().await.expect("ping after emptying the store");
    }

    #[tokio::test]
    async fn a_reader_keeps_the_version_it_opened() {
        let (_dir, store) = local_store().await;
        let old = pseudo_random(12, 2 * MIB);
        put(&store, "k", old.clone()).await;
        let opened = store.get("k", None).await.expect("get");
        put(&store, "k", pseudo_random(13, MIB)).await;
        store.delete("k").await.expect("delete");
        assert_eq!(read_all(opened).await, old);
    }

    #[tokio::test]
    async fn listing_pages_through_large_directories_and_skips_temporaries() {
        let (_dir, store) = local_store().await;
        let root = store.root();
        let mut keys: Vec<String> = (0..2500).map(|i| format!("many/{i:05}")).collect();
        std::fs::create_dir_all(root.join("many")).expect("mkdir");
        for key in &keys {
            std::fs::write(root.join(key), b"x").expect("write");
        }
        // Temporaries of writes in progress are never keys.
        std::fs::write(root.join("many/.tmp-123"), b"x").expect("write");
        std::fs::create_dir_all(root.join(".tmp")).expect("mkdir");
        std::fs::write(root.join(".tmp/x.part"), b"x").expect("write");
        keys.sort();
        let mut pages = 0;
        let mut listed = Vec::new();
        let mut stream = store.list("");
        while let Some(page) = stream.next().await {
            pages += 1;
            listed.extend(page.expect("page").into_iter().map(|l| l.key));
        }
        assert!(listed == keys, "{} keys listed, not in order", listed.len());
        assert!(pages > 1, "2500 keys in {pages} page");
    }

    #[tokio::test]
    async fn ping_fails_when_the_root_is_gone() {
        let (_dir, store) = local_store().await;
        std::fs::remove_dir_all(store.root()).expect("remove root");
        match store.ping().await {
            Err(StorageError::Unavailable { what: msg, .. }) => {
                assert!(msg.contains("blobs"), "{msg}")
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_root_that_went_fails_writes_and_is_not_made_again() {
        let (dir, store) = local_store().await;
        put(&store, "kept/one", "1").await;
        // As an unmounted volume: the store's root is gone.
        let root = dir.path().join("blobs");
        std::fs::remove_dir_all(&root).expect("remove the root");
        for key in ["top", "deep/er/key"] {
            let written = store.put_bytes(key, Bytes::from_static(b"x"), BINARY).await;
            assert!(
                matches!(written, Err(StorageError::Unavailable { .. })),
                "writing {key} under a missing root: {written:?}"
            );
        }
        assert!(!root.exists(), "the store made its root again");
    }
}

// ---------------------------------------------------------------- S3 only

mod s3_specific {
    use aws_sdk_s3::Client;

    use super::*;

    #[test]
    fn settings_defaults_and_unknown_fields() {
        let s: S3Settings = toml::from_str("bucket = \"b\"").expect("settings");
        assert_eq!(s.bucket, "b");
        assert_eq!(s.region, "us-east-1");
        assert_eq!(s.prefix, "");
        assert_eq!(s.multipart_threshold_bytes, 16 * MIB as u64);
        assert_eq!(s.part_size_bytes, 8 * MIB as u64);
        assert_eq!(s.timeout_ms, 30_000);
        assert!(!s.force_path_style);
        assert_eq!(
            s,
            S3Settings {
                bucket: "b".into(),
                ..S3Settings::default()
            }
        );
        let err = toml::from_str::<S3Settings>("bucket = \"b\"\nbukket = \"c\"")
            .expect_err("unknown field");
        assert!(err.to_string().contains("bukket"), "{err}");
    }

    #[tokio::test]
    async fn half_set_credentials_are_refused() {
        let settings = S3Settings {
            access_key_id: Some("GK0123".into()),
            ..S3Settings::default()
        };
        match S3Store::connect(&settings).await {
            Err(StorageError::Unavailable { what: msg, .. }) => {
                assert!(msg.contains("together"), "{msg}")
            }
            Err(e) => panic!("expected Unavailable, got {e}"),
            Ok(_) => panic!("expected an error"),
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_fast() {
        // Nothing listens on the discard port of the loopback.
        let settings = S3Settings {
            endpoint: Some("http://127.0.0.1:9".into()),
            force_path_style: true,
            access_key_id: Some("GK00000000000000000000000000".into()),
            secret_access_key: Some("0".repeat(64)),
            timeout_ms: 2_000,
            ..S3Settings::default()
        };
        let store = S3Store::connect(&settings).await.expect("connect");
        let started = Instant::now();
        match store.ping().await {
            Err(StorageError::Unavailable { what: msg, .. }) => {
                assert!(msg.contains("s3"), "{msg}")
            }
            other => panic!("expected Unavailable, got {:?}", other.err()),
        }
        match store.get("some/key", None).await {
            Err(StorageError::Unavailable { .. }) => {}
            Err(e) => panic!("expected Unavailable, got {e}"),
            Ok(_) => panic!("expected an error"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
    }

    /// The tests reach Garage over plain http; AWS itself is https. The
    /// SDK's client must speak TLS (rustls on ring, the one TLS stack of the
    /// build) to an `https://` endpoint: its first bytes are a TLS record
    /// carrying a ClientHello.
    #[tokio::test]
    async fn an_https_endpoint_gets_a_tls_client_hello() {
        use tokio::io::AsyncReadExt;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut hello = [0u8; 6];
            socket.read_exact(&mut hello).await.expect("read");
            let _ = tx.send(hello);
            // Dropping the socket fails the handshake: that is all we need.
        });
        let settings = S3Settings {
            endpoint: Some(format!("https://127.0.0.1:{port}")),
            force_path_style: true,
            access_key_id: Some("GK00000000000000000000000000".into()),
            secret_access_key: Some("0".repeat(64)),
            timeout_ms: 2_000,
            ..S3Settings::default()
        };
        let store = S3Store::connect(&settings).await.expect("connect");
        assert!(store.ping().await.is_err(), "no S3 server answered");
        let hello = tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("the client connected")
            .expect("bytes were read");
        // Record type 22 (handshake), version 3.x, then the length (2
        // bytes), then handshake type 1 (ClientHello).
        assert_eq!(
            (hello[0], hello[1], hello[5]),
            (0x16, 0x03, 0x01),
            "{hello:02x?}"
        );
    }

    #[tokio::test]
    async fn a_missing_bucket_is_unavailable_not_not_found() {
        let settings = S3Settings {
            bucket: format!("airlock-missing-{}", uuid::Uuid::new_v4().simple()),
            ..s3_settings()
        };
        let store = S3Store::connect(&settings).await.expect("connect");
        for (what, result) in [
            ("ping", store.ping().await.map(|_| ())),
            ("get", store.get("k", None).await.map(|_| ())),
            ("get_bytes", store.get_bytes("k").await.map(|_| ())),
            (
                "put_bytes",
                store.put_bytes("k", Bytes::from_static(b"x"), BINARY).await,
            ),
        ] {
            match result {
                Err(StorageError::Unavailable { .. }) => {}
                other => panic!("{what}: expected Unavailable, got {other:?}"),
            }
        }
    }

    async fn head(client: &Client, bucket: &str, key: &str) -> Option<String> {
        match client.head_object().bucket(bucket).key(key).send().await {
            Ok(head) => Some(head.e_tag().unwrap_or_default().to_string()),
            Err(_) => None,
        }
    }

    #[tokio::test]
    async fn large_files_go_up_in_parts_under_the_prefix() {
        let store = s3_store().await;
        let p = prefix();
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, _) = write_file(dir.path(), "large", 14, 12 * MIB);
        let key = format!("{p}/parts");
        store.put_file(&key, &path, BINARY).await.expect("put_file");
        assert!(path.exists(), "S3 put_file leaves the caller's file alone");
        let object = store.object_key(&key).expect("object key");
        assert_eq!(object, format!("storage-tests/{key}"));
        let etag = head(store.client(), store.bucket(), &object)
            .await
            .expect("the object is under the prefix");
        // A multipart object's ETag ends with the number of parts: 5+5+2 MiB.
        assert!(etag.trim_matches('"').ends_with("-3"), "ETag {etag}");

        // At the threshold exactly: a single PutObject.
        let (small, _) = write_file(dir.path(), "small", 15, 5 * MIB);
        let small_key = format!("{p}/single");
        store
            .put_file(&small_key, &small, BINARY)
            .await
            .expect("put_file");
        let etag = head(
            store.client(),
            store.bucket(),
            &store.object_key(&small_key).expect("key"),
        )
        .await
        .expect("stored");
        assert!(!etag.contains('-'), "ETag {etag}");
    }

    #[tokio::test]
    async fn a_dropped_upload_is_aborted() {
        let store = s3_store().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, _) = write_file(dir.path(), "large", 16, 40 * MIB);
        let key = format!("{}/dropped", prefix());
        let object = store.object_key(&key).expect("key");
        let upload = store.put_file(&key, &path, BINARY);
        let _ = tokio::time::timeout(Duration::from_millis(150), upload).await;
        // The abort runs in the background: wait for it.
        let list = || async {
            store
                .client()
                .list_multipart_uploads()
                .bucket(store.bucket())
                .prefix(&object)
                .send()
                .await
                .expect("list multipart uploads")
        };
        let aborted = eventually(Duration::from_secs(10), || async {
            list().await.uploads().is_empty().then_some(())
        })
        .await;
        assert!(
            aborted.is_some(),
            "multipart upload still open: {:?}",
            list().await.uploads()
        );
    }
}

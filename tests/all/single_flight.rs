//! The SDK's `get_or_compute` (built on `cache.add` and `cache.wait`):
//! concurrent invocations that all miss compute the value once, on the
//! memory and Redis backends; and `cache.wait` stays bounded in look-ups and
//! time whatever the plugin asks for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::budget::Budget;
use airlock::cache::{CacheBackend, RedisBackend};
use bytes::Bytes;

use crate::common::*;
use crate::harness::redis_url;

/// Invocations started together on one plugin and one cache.
const CALLERS: usize = 6;

async fn computes_once(backend: Arc<dyn CacheBackend>) {
    let name = format!("single-flight-{}", uuid::Uuid::new_v4().simple());
    let plugin = Arc::new(load_with_cache(
        "single-flight",
        &name,
        roomy(),
        plugin_cache(&backend, &name, Default::default()),
    ));
    let calls = (0..CALLERS).map(|_| {
        let plugin = Arc::clone(&plugin);
        tokio::spawn(async move {
            verdict(invoke(&plugin, "text/plain", Bytes::from_static(b"x")).await)
        })
    });
    let verdicts = futures::future::join_all(calls).await;
    let verdicts: Vec<_> = verdicts.into_iter().map(Result::unwrap).collect();
    let computed = verdicts
        .iter()
        .filter(|v| meta(v, "computed") == Some("yes"))
        .count();
    assert_eq!(computed, 1, "{verdicts:?}");
    let table = meta(&verdicts[0], "table").unwrap();
    assert_eq!(table.len(), 16);
    assert!(
        verdicts.iter().all(|v| meta(v, "table") == Some(table)),
        "{verdicts:?}"
    );
    // Later callers hit.
    let again = verdict(invoke(&plugin, "text/plain", Bytes::from_static(b"x")).await);
    assert_eq!(meta(&again, "computed"), Some("no"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_compute_once_on_the_memory_backend() {
    computes_once(memory_backend()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_compute_once_on_redis() {
    let redis = RedisBackend::connect(&redis_url(), Duration::from_secs(2))
        .await
        .expect("redis on 127.0.0.1");
    computes_once(Arc::new(redis)).await;
}

/// `cache.wait("…", u32::MAX)` on a key nobody sets: `none` after at most
/// 16 look-ups, each one cache call, within half the invocation's time.
#[tokio::test]
async fn a_wait_for_ever_is_bounded_in_lookups_and_time() {
    let budget = Budget {
        timeout_ms: 4_000,
        ..Budget::default()
    };
    let plugin = load("single-flight", budget);
    let mut upload = upload("text/plain");
    upload.metadata.insert("mode".into(), "wait-forever".into());
    let started = Instant::now();
    let invocation = invoke_upload(&plugin, &upload, Bytes::from_static(b"x")).await;
    let took = started.elapsed();
    let calls = invocation.report.usage.cache_calls;
    let verdict = verdict(invocation);
    assert_eq!(meta(&verdict, "waited"), Some("none"));
    assert!((1..=16).contains(&calls), "{calls} cache calls");
    assert!(
        took < Duration::from_millis(2_500),
        "a wait took {took:?} of a 4 s budget"
    );
}

/// A plugin whose cache-calls budget is smaller than a wait's look-ups is
/// stopped by that budget, as for any other cache call.
#[tokio::test]
async fn a_waits_lookups_count_against_cache_calls() {
    let budget = Budget {
        timeout_ms: 4_000,
        cache_calls: 3,
        ..Budget::default()
    };
    let plugin = load("single-flight", budget);
    let mut upload = upload("text/plain");
    upload.metadata.insert("mode".into(), "wait-forever".into());
    let invocation = invoke_upload(&plugin, &upload, Bytes::from_static(b"x")).await;
    assert_stopped(invocation, airlock::budget::Limit::CacheCalls, 3);
}

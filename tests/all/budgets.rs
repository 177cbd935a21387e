//! Each budget limit: a plugin just under it runs, just over it is stopped
//! with that limit named.

use std::sync::Arc;
use std::time::Duration;

use airlock::budget::{Budget, Limit};
use airlock::cache::{BackendError, CacheBackend, CachePolicy, Put, PutOutcome};
use airlock::runtime::{HookOutput, Invocation, InvokeError, UsageReport};
use async_trait::async_trait;
use bytes::Bytes;

use crate::common::*;

/// Runs plugin `name` on `fixture` under `budget`.
async fn run(name: &str, budget: Budget, fixture: &str, content_type: &str) -> Invocation {
    invoke(&load(name, budget), content_type, fixture_bytes(fixture)).await
}

fn assert_ok(invocation: &Invocation) {
    assert!(
        invocation.outcome.is_ok(),
        "expected success, got {:?}",
        invocation.outcome
    );
}

/// Like `assert_stopped`, for limits that report the allowance as used
/// (fuel is all spent when it runs out).
fn assert_stopped_at_allowance(invocation: Invocation, limit: Limit, allowed: u64) {
    match error(invocation) {
        InvokeError::BudgetExceeded {
            limit: hit,
            used,
            allowed: a,
            ..
        } => {
            assert_eq!((hit, used, a), (limit, allowed, allowed));
        }
        other => panic!("expected a {limit} budget stop, got {other:?}"),
    }
}

/// Measures what one run uses under a roomy budget.
async fn measure(name: &str, fixture: &str, content_type: &str) -> Invocation {
    let invocation = run(name, roomy(), fixture, content_type).await;
    assert_ok(&invocation);
    invocation
}

#[tokio::test]
async fn fuel_exact_allowance_passes_less_stops() {
    let used = measure("trivial", "picture.png", "image/png")
        .await
        .report
        .fuel_used
        .unwrap();
    assert!(used > 0);
    assert_ok(
        &run(
            "trivial",
            Budget {
                fuel: used,
                ..roomy()
            },
            "picture.png",
            "image/png",
        )
        .await,
    );
    // Wasmtime checks fuel at function entries and loop headers, so the last
    // straight-line stretch of a run can finish on credit: "just under" is
    // one such stretch (a few hundred units) below the measured use.
    let tight = used - used / 10;
    let over = run(
        "trivial",
        Budget {
            fuel: tight,
            ..roomy()
        },
        "picture.png",
        "image/png",
    )
    .await;
    assert_stopped_at_allowance(over, Limit::Fuel, tight);
}

/// Measures what `plugin` uses of `limit` on picture.png, then checks that
/// exactly that allowance passes and one less is stopped naming the limit.
async fn exact_allowance_passes_one_less_stops(
    plugin: &str,
    limit: Limit,
    used: fn(&UsageReport) -> u64,
) -> u64 {
    let measured = used(&measure(plugin, "picture.png", "image/png").await.report);
    assert!(measured > 0, "{plugin} uses no {limit}");
    let with = |allowance: u64| {
        let mut budget = roomy();
        *limit.allowance(&mut budget) = allowance;
        budget
    };
    assert_ok(&run(plugin, with(measured), "picture.png", "image/png").await);
    let over = run(plugin, with(measured - 1), "picture.png", "image/png").await;
    assert_stopped(over, limit, measured - 1);
    measured
}

#[tokio::test]
async fn memory_exact_allowance_passes_one_less_stops() {
    exact_allowance_passes_one_less_stops("trivial", Limit::Memory, |r| r.usage.peak_memory_bytes)
        .await;
}

#[tokio::test]
async fn cache_calls_exact_allowance_passes_one_less_stops() {
    let calls = exact_allowance_passes_one_less_stops("trivial", Limit::CacheCalls, |r| {
        r.usage.cache_calls
    })
    .await;
    assert_eq!(calls, 1, "trivial makes one cache call");
}

#[tokio::test]
async fn cache_write_bytes_exact_allowance_passes_one_less_stops() {
    exact_allowance_passes_one_less_stops("sha256", Limit::CacheWriteBytes, |r| {
        r.usage.cache_write_bytes
    })
    .await;
}

#[tokio::test]
async fn read_bytes_exact_allowance_passes_one_less_stops() {
    let read = exact_allowance_passes_one_less_stops("thumbnail", Limit::ReadBytes, |r| {
        r.usage.read_bytes
    })
    .await;
    assert_eq!(
        read,
        fixture_bytes("picture.png").len() as u64,
        "thumbnail reads the whole file once"
    );
}

#[tokio::test]
async fn output_bytes_exact_allowance_passes_one_less_stops() {
    let out = exact_allowance_passes_one_less_stops("sha256", Limit::OutputBytes, |r| {
        r.usage.output_bytes
    })
    .await;
    assert!(out >= 64, "a hex sha256 is at least 64 bytes of output");
}

#[tokio::test]
async fn log_lines_allowance_lets_the_line_through_none_stops() {
    // The panic plugin logs exactly one line (its panic message) and then
    // traps: with one line allowed it is a crash, with none a budget stop.
    let crashed = run(
        "panic",
        Budget {
            log_lines: 1,
            ..roomy()
        },
        "picture.png",
        "image/png",
    )
    .await;
    assert!(matches!(error(crashed), InvokeError::Crashed { .. }));
    let over = run(
        "panic",
        Budget {
            log_lines: 0,
            ..roomy()
        },
        "picture.png",
        "image/png",
    )
    .await;
    assert_eq!(assert_stopped(over, Limit::LogLines, 0), 1);
}

#[tokio::test]
async fn timeout_stops_a_busy_plugin_and_spares_a_quick_one() {
    let budget = Budget {
        fuel: u64::MAX / 2,
        timeout_ms: 100,
        ..roomy()
    };
    assert_ok(&run("trivial", budget, "picture.png", "image/png").await);
    let started = std::time::Instant::now();
    let over = run("infinite-loop", budget, "picture.png", "image/png").await;
    let used = assert_stopped(over, Limit::Timeout, 100);
    assert!(used < 1_000, "stopped after {used} ms");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A real backend whose every call takes `delay`: what a stalled Redis looks
/// like from the host. Its sleeps are the stalled server's pace, not a wait
/// for something to happen.
struct Stalled {
    inner: Arc<dyn CacheBackend>,
    delay: Duration,
}

#[async_trait]
impl CacheBackend for Stalled {
    fn kind(&self) -> &'static str {
        "stalled"
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, BackendError> {
        tokio::time::sleep(self.delay).await;
        self.inner.get(key).await
    }
    async fn put(&self, put: Put<'_>) -> Result<PutOutcome, BackendError> {
        tokio::time::sleep(self.delay).await;
        self.inner.put(put).await
    }
    async fn delete(&self, namespace: &str, key: &str) -> Result<bool, BackendError> {
        tokio::time::sleep(self.delay).await;
        self.inner.delete(namespace, key).await
    }
    async fn ping(&self) -> Result<(), BackendError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_stalled_cache_cannot_hold_a_plugin_past_its_timeout() {
    let backend: Arc<dyn CacheBackend> = Arc::new(Stalled {
        inner: memory_backend(),
        delay: Duration::from_secs(30),
    });
    // The backend's own timeout (500 ms) is longer than the plugin's 150 ms:
    // the invocation deadline must win and name the timeout.
    let plugin = load_as(
        "trivial",
        "stalled",
        Budget {
            timeout_ms: 150,
            ..roomy()
        },
        &backend,
        CachePolicy::default(),
    );
    let started = std::time::Instant::now();
    let invocation = invoke(&plugin, "image/png", fixture_bytes("picture.png")).await;
    assert_stopped(invocation, Limit::Timeout, 150);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_slow_cache_reads_as_unavailable_within_the_budget() {
    let backend: Arc<dyn CacheBackend> = Arc::new(Stalled {
        inner: memory_backend(),
        delay: Duration::from_secs(30),
    });
    // Backend timeout 500 ms < plugin timeout 5 s: the plugin sees
    // `unavailable` (trivial ignores it) and finishes normally.
    let plugin = load_as(
        "trivial",
        "slow",
        Budget {
            timeout_ms: 5_000,
            ..roomy()
        },
        &backend,
        CachePolicy::default(),
    );
    let invocation = invoke(&plugin, "image/png", fixture_bytes("picture.png")).await;
    assert!(
        matches!(invocation.outcome, Ok(HookOutput::Verdict(_))),
        "{:?}",
        invocation.outcome
    );
}

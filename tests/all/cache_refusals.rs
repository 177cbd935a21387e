//! A cache call the host refuses still costs what was asked for: a batch
//! over 64 keys is charged one `cache_calls` per key requested, so a plugin
//! looping on refused batches is stopped by its cache budget, at once, not
//! by a timeout after hammering the host.

use std::time::{Duration, Instant};

use airlock::budget::{Budget, Limit};
use airlock::runtime::{Invocation, InvokeError};

use crate::common::*;
use crate::inline::*;

fn assert_cache_calls_stop(invocation: Invocation, used: u64, allowed: u64) {
    assert_eq!(invocation.report.usage.cache_calls, used);
    match error(invocation) {
        InvokeError::BudgetExceeded {
            limit,
            used: u,
            allowed: a,
            ..
        } => assert_eq!((limit, u, a), (Limit::CacheCalls, used, allowed)),
        other => panic!("expected a cache_calls stop, got {other:?}"),
    }
}

/// A processor that calls `set-many` with 65 entries ("k" → empty) forever.
fn set_many_flood() -> Component {
    let mut entries = Vec::new();
    for _ in 0..65 {
        // tuple<string, list<u8>>: key pointer, key length, value pointer,
        // value length.
        for w in [64, 1, 0, 0] {
            entries.extend_from_slice(&word(w));
        }
    }
    Component::processor(format!(
        r#"{key}
    {entries}
    (func (export "process") {HOOK}
      (call $drop-content (local.get 11))
      (loop $flood
        (call $set-many (i32.const 1024) (i32.const 65) (i32.const 0) (i32.const 256))
        (br $flood))
      unreachable)"#,
        key = data(64, b"k"),
        entries = data(1024, &entries),
    ))
}

#[tokio::test]
async fn refused_get_many_batches_are_charged_per_key_requested() {
    // Under the default 64 calls the first refused batch of 65 is over.
    let started = Instant::now();
    let first = invoke(
        &load("get-many-flood", roomy()),
        "image/png",
        fixture_bytes("picture.png"),
    )
    .await;
    assert_cache_calls_stop(first, 65, 64);
    // With room for 1,000 calls, the 16th batch (1,040 keys asked) is over.
    let budget = Budget {
        cache_calls: 1_000,
        ..roomy()
    };
    let looped = invoke(
        &load("get-many-flood", budget),
        "image/png",
        fixture_bytes("picture.png"),
    )
    .await;
    assert_cache_calls_stop(looped, 16 * 65, 1_000);
    // Stopped by the count, long before the 10 s timeout could.
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn refused_set_many_batches_are_charged_per_key_requested() {
    let plugin = set_many_flood().load(Budget {
        cache_calls: 1_000,
        ..roomy()
    });
    let invocation = invoke(&plugin, "image/png", fixture_bytes("picture.png")).await;
    assert_cache_calls_stop(invocation, 16 * 65, 1_000);
}

#[tokio::test]
async fn a_batch_of_millions_of_keys_is_stopped_before_any_is_copied() {
    // 6,000,000 empty keys: 48 MB of zeroed guest memory, and far more than
    // that if the host copied them into strings before looking at the count.
    // The list is over what the budget lets the host copy in one transfer,
    // so wasmtime refuses it before the host function even runs.
    let keys = 6_000_000u32;
    let plugin = Component::processor(format!(
        r#"(func (export "process") {HOOK}
      (local $keys i32)
      (call $drop-content (local.get 11))
      (local.set $keys (i32.mul (memory.size) (i32.const 65536)))
      (if (i32.eq (memory.grow (i32.const {pages})) (i32.const -1))
        (then unreachable))
      (call $get-many (local.get $keys) (i32.const {keys}) (i32.const 256))
      unreachable)"#,
        pages = (keys * 8).div_ceil(65536),
    ))
    .load(roomy());
    let started = Instant::now();
    let invocation = invoke(&plugin, "image/png", fixture_bytes("picture.png")).await;
    match error(invocation) {
        InvokeError::Crashed { crash, .. } => {
            assert_eq!(crash, airlock::runtime::CrashKind::CopyLimit)
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

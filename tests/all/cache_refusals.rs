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
async fn a_batch_of_millions_of_keys_costs_its_keys_and_copies_none() {
    // 6,000,000 empty keys: 48 MB of zeroed guest memory, and far more than
    // that if the host copied them into strings before looking at the count.
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
        // Charged per key asked for, before a single key is read.
        InvokeError::BudgetExceeded {
            limit,
            used,
            allowed,
            ..
        } => assert_eq!(
            (limit, used, allowed),
            (Limit::CacheCalls, u64::from(keys), 64)
        ),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_value_over_the_cap_is_refused_as_too_large_and_charged() {
    // One entry with a 2 MiB value: over `max_value_bytes` (1 MiB) and over
    // a small output budget, yet the call must answer `too-large` (not
    // crash) and count one cache call, having copied nothing.
    let entry: Vec<u8> = [64u32, 1, 65536, 2 << 20]
        .into_iter()
        .flat_map(word)
        .collect();
    let plugin = Component::processor(format!(
        r#"{key}
    {entry}
    (func (export "process") {HOOK}
      (call $drop-content (local.get 11))
      (if (i32.eq (memory.grow (i32.const 40)) (i32.const -1)) (then unreachable))
      (call $set-many (i32.const 1024) (i32.const 1) (i32.const 0) (i32.const 256))
      ;; result<_, error>: err (1) with too-large (1)
      (if (i32.ne (i32.load8_u (i32.const 256)) (i32.const 1)) (then unreachable))
      (if (i32.ne (i32.load8_u (i32.const 257)) (i32.const 1)) (then unreachable))
      (i32.store8 (i32.const 16) (i32.const 0))
      (i32.store8 (i32.const 20) (i32.const 0))
      (i32.store (i32.const 24) (i32.const 0))
      (i32.store (i32.const 28) (i32.const 0))
      (i32.const 16))"#,
        key = data(64, b"k"),
        entry = data(1024, &entry),
    ))
    .load(Budget {
        output_bytes: 64 << 10,
        ..roomy()
    });
    let invocation = invoke(&plugin, "image/png", fixture_bytes("picture.png")).await;
    assert!(invocation.outcome.is_ok(), "{:?}", invocation.outcome);
    assert_eq!(invocation.report.usage.cache_calls, 1);
    assert_eq!(invocation.report.usage.cache_write_bytes, 0);
}

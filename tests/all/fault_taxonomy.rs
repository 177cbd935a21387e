//! Breaking the canonical ABI is the plugin's crash, with its kind: invalid
//! values it returns or passes (`invalid_result`), forged or misused resource
//! handles (`bad_handle`). None of it is ever reported as a failure of the
//! host (`InvokeError::Host`), which would count against the service
//! instead of the plugin.

use airlock::budget::Budget;
use airlock::runtime::{CrashKind, InvokeError, Plugin};

use crate::common::*;
use crate::inline::*;

async fn crash_of(plugin: &Plugin) -> (CrashKind, String) {
    let invocation = invoke(plugin, "image/png", fixture_bytes("picture.png")).await;
    match error(invocation) {
        InvokeError::Crashed { crash, detail, .. } => (crash, detail),
        InvokeError::Host { reason, .. } => {
            panic!("a plugin's ABI violation was reported as the host's: {reason}")
        }
        other => panic!("expected a crash, got {other:?}"),
    }
}

async fn assert_crash(plugin: &Plugin, expected: CrashKind, what: &str) {
    let (crash, detail) = crash_of(plugin).await;
    assert_eq!(crash, expected, "{what}: {detail}");
}

/// A processor whose `process` drops its handle, stores `area` (core
/// instructions) and returns `result` as the result pointer.
fn returning(area: &str, result: &str) -> Plugin {
    Component::processor(format!(
        r#"(data (i32.const 64) "\ff\fe\fd")
    (func (export "process") {HOOK}
      (call $drop-content (local.get 11))
      {area}
      {result})"#
    ))
    .load(roomy())
}

#[tokio::test]
async fn a_reject_reason_that_is_not_utf8_is_an_invalid_result() {
    let (crash, detail) = crash_of(&load("invalid-utf8", roomy())).await;
    assert_eq!(crash, CrashKind::InvalidResult, "{detail}");
}

/// Verdict cases, as the canonical ABI numbers them.
const ACCEPT: u32 = 0;
const REJECT: u32 = 1;

/// Instructions storing ok(verdict `case`) in the result area at 16, with
/// the case's list or string at `ptr`, `len`.
fn verdict_area(case: u32, ptr: u32, len: u32) -> String {
    format!(
        "(i32.store8 (i32.const 16) (i32.const 0)) \
         (i32.store8 (i32.const 20) (i32.const {case})) \
         (i32.store (i32.const 24) (i32.const {ptr})) \
         (i32.store (i32.const 28) (i32.const {len}))"
    )
}

#[tokio::test]
async fn bad_result_pointers_and_lists_are_invalid_results() {
    // One metadata entry at 4096 whose key is the bytes FF FE FD (at 64).
    let key_not_utf8 = verdict_area(ACCEPT, 4096, 1)
        + " (i32.store (i32.const 4096) (i32.const 64)) \
           (i32.store (i32.const 4100) (i32.const 3))";
    let cases = [
        (
            "result pointer past the end of memory",
            String::new(),
            0x7fff_fff0,
        ),
        ("result pointer not aligned", String::new(), 17),
        (
            "metadata list past the end of memory",
            verdict_area(ACCEPT, 0x7fff_0000, 1),
            16,
        ),
        (
            // Two 16-byte entries from 16 bytes before the end of the
            // one-page memory.
            "metadata list running off the end of memory",
            verdict_area(ACCEPT, 65536 - 16, 2),
            16,
        ),
        (
            "metadata list not aligned",
            verdict_area(ACCEPT, 4098, 1),
            16,
        ),
        ("metadata key not UTF-8", key_not_utf8, 16),
        (
            "reject reason past the end of memory",
            verdict_area(REJECT, 0x7fff_0000, 8),
            16,
        ),
    ];
    for (what, area, result) in cases {
        let result = format!("(i32.const {result})");
        assert_crash(&returning(&area, &result), CrashKind::InvalidResult, what).await;
    }
}

#[tokio::test]
async fn a_realloc_returning_a_pointer_outside_memory_is_an_invalid_result() {
    // The host allocates in the plugin's memory to pass the upload in; a
    // realloc that answers with a pointer past its memory is the plugin's.
    for (what, realloc) in [
        ("past the end", "(i32.const 0x7fff0000)"),
        (
            "straddling the end",
            "(i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 1))",
        ),
    ] {
        let plugin = Component {
            realloc: realloc.into(),
            ..accepting_with_metadata(&[])
        }
        .load(roomy());
        assert_crash(&plugin, CrashKind::InvalidResult, what).await;
    }
}

#[tokio::test]
async fn a_forged_content_handle_is_a_bad_handle() {
    let (crash, detail) = crash_of(&load("bad-handle", roomy())).await;
    assert_eq!(crash, CrashKind::BadHandle, "{detail}");
}

#[tokio::test]
async fn misused_handles_are_bad_handles() {
    let read = |handle: &str| {
        format!("(call $read {handle} (i64.const 0) (i32.const 16) (i32.const 256))")
    };
    let cases = [
        (
            "reading through the handle after dropping it",
            format!(
                "(call $drop-content (local.get 11)) {}",
                read("(local.get 11)")
            ),
        ),
        (
            "dropping the borrowed handle twice",
            "(call $drop-content (local.get 11)) (call $drop-content (local.get 11))".into(),
        ),
        (
            "returning with the borrowed handle still held",
            String::new(),
        ),
        (
            "reading through handle 0",
            format!(
                "(call $drop-content (local.get 11)) {}",
                read("(i32.const 0)")
            ),
        ),
        (
            "reading through a handle index far past the table",
            format!(
                "(call $drop-content (local.get 11)) {}",
                read("(i32.const -1)")
            ),
        ),
    ];
    for (what, body) in cases {
        let plugin = Component::processor(format!(
            r#"(func (export "process") {HOOK}
      {body}
      (i32.const 16))"#
        ))
        .load(roomy());
        assert_crash(&plugin, CrashKind::BadHandle, what).await;
    }
}

#[tokio::test]
async fn exhausting_the_handle_table_is_a_bad_handle() {
    // A resource of the plugin's own, created without end: the store's
    // handle limit stops it long before fuel or time.
    let plugin = Component {
        items: r#"
  (type $own (resource (rep i32)))
  (core func $own-new (canon resource.new $own))"#
            .into(),
        env: r#"(export "own-new" (func $own-new))"#.into(),
        ..Component::processor(format!(
            r#"(import "env" "own-new" (func $own-new (param i32) (result i32)))
    (func (export "process") {HOOK}
      (call $drop-content (local.get 11))
      (loop $more
        (drop (call $own-new (i32.const 7)))
        (br $more))
      unreachable)"#
        ))
    }
    .load(Budget {
        fuel: 1_000_000_000,
        ..roomy()
    });
    assert_crash(&plugin, CrashKind::BadHandle, "handle table exhausted").await;
}

#[tokio::test]
async fn a_log_line_that_is_not_utf8_is_an_invalid_result() {
    let plugin = Component::processor(format!(
        r#"(data (i32.const 64) "ok \ff\fe")
    (func (export "process") {HOOK}
      (call $drop-content (local.get 11))
      (call $log (i32.const 2) (i32.const 64) (i32.const 5))
      (i32.const 16))"#
    ))
    .load(roomy());
    assert_crash(&plugin, CrashKind::InvalidResult, "log line not UTF-8").await;
}

#[tokio::test]
async fn the_runtime_runs_good_plugins_after_abi_faults() {
    for name in ["invalid-utf8", "bad-handle"] {
        let _ = crash_of(&load(name, roomy())).await;
        assert_trivial_still_runs(name).await;
    }
}

#[tokio::test]
async fn a_bad_handle_in_a_start_function_is_the_plugins_fault() {
    // Found by the fuzzer: the fault happens while instantiating, before the
    // hook is called, and is still the plugin's, not the host's.
    let plugin = Component::processor(format!(
        r#"(func $boot
      (call $read (i32.const 1) (i64.const 0) (i32.const 1) (i32.const 256)))
    (start $boot)
    {}"#,
        process_returning_area("")
    ))
    .load(roomy());
    assert_crash(&plugin, CrashKind::BadHandle, "forged handle in start").await;
}

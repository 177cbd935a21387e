//! `airlock plugin check` refuses exactly what loading refuses: a component
//! that links against the wrong shapes (a hook with the wrong signature, an
//! interface imported as a bare function) fails the check, with the reason,
//! instead of passing it and failing later when the service runs it.

use airlock::budget::Budget;
use airlock::runtime::LoadError;

use crate::common::*;
use crate::inline::*;

/// `process` without its `content` parameter.
fn wrong_process_signature() -> Component {
    Component {
        export: Some(
            r#"
  (type $hook-type (func
    (param "upload" $upload)
    (result (result $verdict (error $plugin-error)))))
  (func $hook (type $hook-type)
    (canon lift (core func $main "process-without-content")
      (memory $memory) (realloc $realloc)))
  (instance $hook-instance (export "process" (func $hook)))
  (export "airlock:plugin/pre-store@0.1.0" (instance $hook-instance))"#
                .into(),
        ),
        ..Component::processor(
            r#"(func (export "process-without-content")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32) (result i32)
      (i32.const 16))"#,
        )
    }
}

/// `log` imported under its interface's name as a plain function.
fn log_as_a_function() -> Component {
    Component {
        cache_and_log: false,
        items: r#"
  (import "airlock:plugin/log@0.1.0" (func $log-write (param "level" u32) (param "message" string)))
  (core func $log-lowered (canon lower (func $log-write) (memory $memory)))"#
            .into(),
        env: r#"(export "log" (func $log-lowered))"#.into(),
        ..Component::processor(format!(
            r#"(import "env" "log" (func $log (param i32 i32 i32)))
    (func (export "process") {HOOK}
      (call $drop-content (local.get 11))
      (i32.const 16))"#
        ))
    }
}

/// `plugin check` and `plugin run` both refuse `component`, naming `what`.
fn assert_refused_by_check_and_run(component: &Component, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugin.wasm");
    std::fs::write(&path, component.bytes()).unwrap();
    let (code, text) = airlock(&["plugin".as_ref(), "check".as_ref(), path.as_os_str()]);
    assert_eq!(code, 1, "plugin check: {text}");
    assert!(text.contains("refused"), "plugin check: {text}");
    assert!(
        text.contains(what),
        "plugin check does not name {what}: {text}"
    );
    assert!(!text.contains(": ok"), "plugin check: {text}");
    let picture = fixture("picture.png");
    let (code, text) = airlock(&[
        "plugin".as_ref(),
        "run".as_ref(),
        path.as_os_str(),
        picture.as_os_str(),
    ]);
    assert_eq!(code, 1, "plugin run: {text}");
    assert!(text.contains("refused"), "plugin run: {text}");
    assert!(
        text.contains(what),
        "plugin run does not name {what}: {text}"
    );
}

#[test]
fn a_process_with_the_wrong_signature_is_refused_by_inspect_and_load() {
    let bytes = wrong_process_signature().bytes();
    let inspected = runtime().inspect(&bytes);
    assert!(inspected.is_err(), "inspect passed it: {inspected:?}");
    let loaded = load_bytes_with(runtime(), &bytes, Budget::default());
    assert!(loaded.is_err(), "load passed it");
    // Both for the same reason.
    assert_eq!(
        inspected.err().unwrap().to_string(),
        loaded.err().unwrap().to_string()
    );
}

#[test]
fn a_log_import_that_is_a_function_is_refused_by_inspect_and_load() {
    let bytes = log_as_a_function().bytes();
    let inspected = runtime().inspect(&bytes);
    assert!(inspected.is_err(), "inspect passed it: {inspected:?}");
    let loaded = load_bytes_with(runtime(), &bytes, Budget::default());
    assert!(loaded.is_err(), "load passed it");
    let (inspected, loaded): (LoadError, LoadError) =
        (inspected.err().unwrap(), loaded.err().unwrap());
    assert_eq!(inspected.to_string(), loaded.to_string());
}

#[test]
fn plugin_check_refuses_a_process_with_the_wrong_signature_like_run() {
    assert_refused_by_check_and_run(&wrong_process_signature(), "process");
}

#[test]
fn plugin_check_refuses_log_imported_as_a_function_like_run() {
    assert_refused_by_check_and_run(&log_as_a_function(), "airlock:plugin/log@0.1.0");
}

#[test]
fn plugin_check_still_passes_the_hand_written_plugins_that_link() {
    // The hostile components are well-formed: they must pass the check, so
    // that their tests exercise the runtime and not the loader.
    for name in [
        "metadata-flood",
        "derived-flood",
        "multi-memory",
        "table-flood",
        "get-many-flood",
        "log-forge",
        "bad-handle",
        "invalid-utf8",
    ] {
        let path = plugin_path(name);
        let (code, text) = airlock(&["plugin".as_ref(), "check".as_ref(), path.as_os_str()]);
        assert_eq!(code, 0, "{name}: {text}");
    }
}

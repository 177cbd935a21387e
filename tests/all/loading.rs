//! What the runtime refuses at load time, and why.

use std::sync::Arc;

use airlock::budget::Budget;
use airlock::cache::CachePolicy;
use airlock::runtime::{HookKind, LoadError, PluginRuntime, RuntimeConfig};

use crate::common::*;

fn load_bytes(bytes: &[u8]) -> Result<airlock::runtime::Plugin, LoadError> {
    let cache = plugin_cache(&memory_backend(), "inline", CachePolicy::default());
    runtime().load("inline", bytes, Budget::default(), cache)
}

#[test]
fn a_wasi_filesystem_import_is_refused_by_name() {
    let bytes = std::fs::read(plugin_path("wasi-escape")).unwrap();
    match load_bytes(&bytes) {
        Err(LoadError::DisallowedImport(name)) => {
            assert!(name.starts_with("wasi:filesystem/"), "{name}")
        }
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn a_socket_import_is_refused_by_name() {
    let wat = r#"(component (import "wasi:sockets/tcp@0.2.0" (instance)))"#;
    match load_bytes(wat.as_bytes()) {
        Err(LoadError::DisallowedImport(name)) => assert_eq!(name, "wasi:sockets/tcp@0.2.0"),
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn a_flush_of_its_own_invention_is_refused() {
    // The cache interface name is allowed; a function it does not have is not.
    let wat = r#"(component
        (import "airlock:plugin/cache@0.1.0" (instance (export "flush" (func))))
    )"#;
    match load_bytes(wat.as_bytes()) {
        Err(LoadError::DisallowedImport(name)) => {
            assert_eq!(name, "airlock:plugin/cache@0.1.0#flush")
        }
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn a_component_exporting_no_hook_is_the_wrong_world() {
    assert!(matches!(
        load_bytes(b"(component)"),
        Err(LoadError::WrongWorld(_))
    ));
}

#[test]
fn a_core_module_is_told_to_componentize() {
    let err = load_bytes(b"\0asm\x01\0\0\0").err().unwrap();
    assert!(matches!(err, LoadError::CoreModule));
    assert!(err.to_string().contains("componentize"));
}

#[test]
fn garbage_is_malformed() {
    assert!(matches!(
        load_bytes(b"\0asm\x0d\0\x01\0garbage"),
        Err(LoadError::Malformed(_))
    ));
    assert!(matches!(
        load_bytes(b"not wasm at all"),
        Err(LoadError::Malformed(_))
    ));
}

#[test]
fn an_oversized_component_is_refused_before_compiling() {
    let small = PluginRuntime::new(RuntimeConfig {
        max_component_bytes: 1_000,
        max_instances: 2,
        compiler_program: Some(compiler()),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let bytes = std::fs::read(plugin_path("sha256")).unwrap();
    let cache = plugin_cache(&memory_backend(), "big", CachePolicy::default());
    match small.load("big", &bytes, Budget::default(), cache) {
        Err(LoadError::TooLarge { size, limit }) => {
            assert_eq!((size, limit), (bytes.len() as u64, 1_000))
        }
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn a_budget_above_the_pool_memory_is_refused() {
    let budget = Budget {
        memory_bytes: u64::MAX,
        ..Budget::default()
    };
    let cache = plugin_cache(&memory_backend(), "m", CachePolicy::default());
    let err = runtime()
        .load_file("m", &plugin_path("trivial"), budget, cache)
        .err()
        .unwrap();
    assert!(
        matches!(err, LoadError::MemoryAboveRuntimeLimit { .. }),
        "{err}"
    );
}

#[test]
fn worlds_are_detected_and_imports_listed() {
    let sniff = runtime()
        .inspect(&std::fs::read(plugin_path("content-sniff")).unwrap())
        .unwrap();
    assert_eq!(sniff.world, HookKind::Processor);
    let thumb = runtime()
        .inspect(&std::fs::read(plugin_path("thumbnail")).unwrap())
        .unwrap();
    assert_eq!(thumb.world, HookKind::Extension);
    for import in sniff.imports.iter().chain(&thumb.imports) {
        assert!(import.starts_with("airlock:plugin/"), "{import}");
    }
}

#[test]
fn compiled_components_are_cached_on_disk_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        compiled_cache_dir: Some(dir.path().to_path_buf()),
        max_instances: 2,
        compiler_program: Some(compiler()),
        ..RuntimeConfig::default()
    };
    let bytes = std::fs::read(plugin_path("trivial")).unwrap();
    let backend = memory_backend();
    for _ in 0..2 {
        let runtime = Arc::new(PluginRuntime::new(config.clone()).unwrap());
        let cache = plugin_cache(&backend, "t", CachePolicy::default());
        runtime.load("t", &bytes, Budget::default(), cache).unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1, "one artifact, reused by the second runtime");
    }
}

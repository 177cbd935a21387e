//! Invocation overhead: fresh store + instantiate + call + one cache get, for
//! the `trivial` plugin, with fuel metering on and off, beside two floors on
//! the same engine settings: (a) the same component with a no-op host, and
//! (b) instantiating an empty one-page component; and what fuel metering
//! costs on real plugins (`thumbnail` on a 2048x1536 photo,
//! `sha256` on 8 MiB, `exif-strip` on a GPS-tagged photo), on and off side
//! by side.
//!
//! Needs the plugins built (`scripts/build-plugins.sh`); run with
//! `cargo bench -p airlock --bench invocation`.

#![allow(missing_docs, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use airlock::budget::Budget;
use airlock::cache::{CachePolicy, MemoryBackend, PluginCache};
use airlock::runtime::{ContentSource, PluginRuntime, RuntimeConfig, UploadInfo};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};

fn component(name: &str) -> Vec<u8> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../plugins/dist/{name}.wasm"));
    std::fs::read(&path).expect("plugins/dist: run scripts/build-plugins.sh")
}

fn fixture(name: &str) -> Bytes {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/{name}"));
    Bytes::from(std::fs::read(&path).expect("fixture"))
}

fn runtime(fuel_metering: bool) -> PluginRuntime {
    PluginRuntime::new(RuntimeConfig {
        fuel_metering,
        compiler_program: Some(env!("CARGO_BIN_EXE_airlock").into()),
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

fn cache(plugin: &str) -> PluginCache {
    PluginCache::new(
        Arc::new(MemoryBackend::new(16 << 20)),
        "bench",
        plugin,
        CachePolicy::default(),
        Duration::from_millis(100),
    )
}

fn invocation(c: &mut Criterion) {
    let bytes = component("trivial");
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let mut group = c.benchmark_group("invoke_trivial");
    // The service's settings with fuel on and off, and with fuel on but
    // every page of linear memory returned to the kernel after each
    // invocation (`memory_keep_resident_bytes = 0`, wasmtime's default).
    let variants = [
        ("fuel_on", runtime(true)),
        ("fuel_off", runtime(false)),
        (
            "fuel_on_no_keep_resident",
            PluginRuntime::new(RuntimeConfig {
                memory_keep_resident_bytes: 0,
                compiler_program: Some(env!("CARGO_BIN_EXE_airlock").into()),
                ..RuntimeConfig::default()
            })
            .expect("runtime"),
        ),
    ];
    for (name, runtime) in variants {
        let plugin = runtime
            .load("trivial", &bytes, Budget::default(), cache("trivial"))
            .expect("load");
        let upload = UploadInfo {
            id: "bench".into(),
            content_type: "text/plain".into(),
            ..UploadInfo::default()
        };
        let content: Arc<dyn ContentSource> = Arc::new(Bytes::from_static(b"hello"));
        group.bench_function(name, |b| {
            b.to_async(&tokio).iter(|| async {
                let done = plugin.invoke(&upload, Arc::clone(&content)).await;
                assert!(done.outcome.is_ok());
            });
        });
    }
    group.finish();
}

/// Floor (b), beside `invoke_trivial`: a fresh store and the instantiation
/// of an empty component with one memory page, from an `InstancePre`, on
/// an engine with the service's settings (pooling, fuel, epochs). Then
/// where floor (a) parts from it: the same, each time with one thing more
/// that the `trivial` component has — a pooled table (the main module's),
/// a second core instance with its own table (wit-component's shim, filled
/// by an active element segment), and a 2 MiB memory of which three pages
/// are written (stack top, data, heap start: what the trivial plugin
/// leaves dirty).
/// Each table and each written page is reset when the store drops
/// (a `PAGEMAP_SCAN` per table and memory, then a copy per page).
fn floor_empty_component_and_parts(c: &mut Criterion) {
    let config = RuntimeConfig::default();
    let engine =
        wasmtime::Engine::new(&airlock::runtime::engine_config(&config, true)).expect("engine");
    let linker = wasmtime::component::Linker::<()>::new(&engine);
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let written = |pages: u32| {
        format!(
            r#"(component
                (core module $m (memory (export "memory") {pages})
                  (func $s (i32.store (i32.const 1048568) (i32.const 1))
                           (i32.store (i32.const 1048576) (i32.const 1))
                           (i32.store (i32.const 1118576) (i32.const 1)))
                  (start $s))
                (core instance (instantiate $m)))"#
        )
    };
    let parts = [
        (
            "floor_empty_component",
            r#"(component
                (core module $m (memory (export "memory") 1))
                (core instance (instantiate $m)))"#
                .to_string(),
        ),
        (
            "part_table",
            r#"(component
                (core module $m (memory (export "memory") 1)
                  (table 25 25 funcref) (func $f) (elem (i32.const 1) func $f $f $f))
                (core instance (instantiate $m)))"#
                .to_string(),
        ),
        (
            "part_two_instances_two_tables",
            r#"(component
                (core module $m (memory (export "memory") 1)
                  (table 25 25 funcref) (func $f) (elem (i32.const 1) func $f $f $f))
                (core module $shim (table 2 2 funcref) (func $f) (elem (i32.const 0) func $f $f))
                (core instance (instantiate $m))
                (core instance (instantiate $shim)))"#
                .to_string(),
        ),
        ("part_3_written_pages_of_2mib", written(32)),
        ("part_3_written_pages_of_1_1mib", written(18)),
    ];
    let mut group = c.benchmark_group("invoke_trivial");
    for (name, wat) in parts {
        let component = wasmtime::component::Component::new(&engine, wat).expect(name);
        let pre = linker.instantiate_pre(&component).expect("instance pre");
        group.bench_function(name, |b| {
            b.to_async(&tokio).iter(|| async {
                let mut store = wasmtime::Store::new(&engine, ());
                store.set_fuel(1_000_000).expect("fuel");
                store.set_epoch_deadline(1);
                pre.instantiate_async(&mut store)
                    .await
                    .expect("instantiate");
            });
        });
    }
    group.finish();
}

// The WIT types the floor's no-op host and its call need, derived here so
// that the floor uses nothing of Airlock's host.
#[allow(
    dead_code,
    reason = "the WIT's cases exist for the guest; the no-op host builds few of them"
)]
mod noop {
    use wasmtime::component::{ComponentType, Lift, Lower};

    #[derive(ComponentType, Lift, Lower, Clone, Copy)]
    #[component(variant)]
    pub enum CacheError {
        #[component(name = "quota-exceeded")]
        QuotaExceeded,
        #[component(name = "too-large")]
        TooLarge,
        #[component(name = "invalid-key")]
        InvalidKey,
        #[component(name = "unavailable")]
        Unavailable,
    }

    #[derive(ComponentType, Lift, Lower, Clone, Copy)]
    #[component(enum)]
    #[repr(u8)]
    pub enum Level {
        #[component(name = "trace")]
        Trace,
        #[component(name = "debug")]
        Debug,
        #[component(name = "info")]
        Info,
        #[component(name = "warn")]
        Warn,
        #[component(name = "error")]
        Error,
    }

    #[derive(ComponentType, Lift, Lower, Clone)]
    #[component(record)]
    pub struct Upload {
        pub id: String,
        pub client: String,
        pub filename: String,
        #[component(name = "content-type")]
        pub content_type: String,
        pub size: u64,
        pub metadata: Vec<(String, String)>,
    }

    #[derive(ComponentType, Lift, Lower, Clone)]
    #[component(record)]
    pub struct Replacement {
        pub bytes: Vec<u8>,
        #[component(name = "content-type")]
        pub content_type: String,
        pub metadata: Vec<(String, String)>,
    }

    #[derive(ComponentType, Lift, Lower, Clone)]
    #[component(variant)]
    pub enum Verdict {
        #[component(name = "accept")]
        Accept(Vec<(String, String)>),
        #[component(name = "reject")]
        Reject(String),
        #[component(name = "replace")]
        Replace(Replacement),
    }

    #[derive(ComponentType, Lift, Lower, Clone)]
    #[component(record)]
    pub struct PluginError {
        pub message: String,
    }

    /// The host resource behind `content`.
    pub struct Content;
}

/// Floor (a): the same `trivial` component, from an `InstancePre` on the
/// same pooled engine settings, with a host whose imports do nothing (the
/// cache always misses): a fresh store, instantiate, call the hook. The
/// gap to `fuel_on` is what Airlock's host adds per invocation (its state,
/// limiter, call hooks, epoch callback, timeouts, slot, output checks).
fn floor_noop_host(c: &mut Criterion) {
    use wasmtime::component::{Linker, Resource, ResourceType};
    let config = RuntimeConfig::default();
    let engine =
        wasmtime::Engine::new(&airlock::runtime::engine_config(&config, true)).expect("engine");
    let component =
        wasmtime::component::Component::new(&engine, component("trivial")).expect("trivial");
    let mut linker = Linker::<()>::new(&engine);
    let version = airlock::runtime::PLUGIN_VERSIONS[airlock::runtime::PLUGIN_VERSIONS.len() - 1];
    type Got = Result<Option<Vec<u8>>, noop::CacheError>;
    {
        let mut cache = linker
            .instance(&format!("airlock:plugin/cache@{version}"))
            .expect("cache");
        cache
            .func_wrap("get", |_, (_key,): (String,)| Ok((Got::Ok(None),)))
            .expect("get");
        cache
            .func_wrap("wait", |_, (_key, _ms): (String, u32)| Ok((Got::Ok(None),)))
            .expect("wait");
        cache
            .func_wrap("get-many", |_, (keys,): (Vec<String>,)| {
                let misses: Vec<Option<Vec<u8>>> = keys.iter().map(|_| None).collect();
                Ok((Result::<_, noop::CacheError>::Ok(misses),))
            })
            .expect("get-many");
        for name in ["set", "add"] {
            cache
                .func_wrap(name, |_, (_k, _v, _t): (String, Vec<u8>, u32)| {
                    Ok((Result::<bool, noop::CacheError>::Ok(true),))
                })
                .expect("set/add");
        }
        cache
            .func_wrap("delete", |_, (_k,): (String,)| {
                Ok((Result::<bool, noop::CacheError>::Ok(false),))
            })
            .expect("delete");
        cache
            .func_wrap("set-many", |_, (_e, _t): (Vec<(String, Vec<u8>)>, u32)| {
                Ok((Result::<(), noop::CacheError>::Ok(()),))
            })
            .expect("set-many");
    }
    linker
        .instance(&format!("airlock:plugin/log@{version}"))
        .expect("log")
        .func_wrap("write", |_, (_l, _m): (noop::Level, String)| Ok(()))
        .expect("write");
    {
        let mut types = linker
            .instance(&format!("airlock:plugin/types@{version}"))
            .expect("types");
        types
            .resource("content", ResourceType::host::<noop::Content>(), |_, _| {
                Ok(())
            })
            .expect("content");
        types
            .func_wrap(
                "[method]content.size",
                |_, (_c,): (Resource<noop::Content>,)| Ok((5u64,)),
            )
            .expect("size");
        types
            .func_wrap(
                "[method]content.read",
                |_, (_c, _o, _l): (Resource<noop::Content>, u64, u32)| Ok((b"hello".to_vec(),)),
            )
            .expect("read");
        types
            .func_wrap(
                "[method]content.sha256",
                |_, (_c,): (Resource<noop::Content>,)| Ok((String::new(),)),
            )
            .expect("sha256");
    }
    let pre = linker.instantiate_pre(&component).expect("instance pre");
    let export = format!("airlock:plugin/pre-store@{version}");
    // Looked up once, as the runtime does at load.
    let (_, interface) = component
        .get_export(None, &export)
        .expect("pre-store export");
    let (_, hook) = component
        .get_export(Some(&interface), "process")
        .expect("process export");
    let upload = noop::Upload {
        id: "bench".into(),
        client: String::new(),
        filename: String::new(),
        content_type: "text/plain".into(),
        size: 5,
        metadata: Vec::new(),
    };
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let mut group = c.benchmark_group("invoke_trivial");
    group.bench_function("floor_noop_host", |b| {
        b.to_async(&tokio).iter(|| async {
            let mut store = wasmtime::Store::new(&engine, ());
            store.set_fuel(1_000_000_000).expect("fuel");
            store.set_epoch_deadline(1);
            let instance = pre.instantiate_async(&mut store).await.expect("instantiate");
            let process = instance
                .get_typed_func::<(&noop::Upload, Resource<noop::Content>), (Result<noop::Verdict, noop::PluginError>,)>(
                    &mut store, &hook,
                )
                .expect("typed");
            let content = Resource::<noop::Content>::new_borrow(0);
            let (result,) = process
                .call_async(&mut store, (&upload, content))
                .await
                .expect("call");
            assert!(matches!(result, Ok(noop::Verdict::Accept(_))));
        });
    });
    group.finish();
}

/// Fuel metering on and off for the real plugins, each on its own input.
fn fuel_cost(c: &mut Criterion) {
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let big: Bytes = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let cases = [
        ("thumbnail", "image/jpeg", fixture("photo-2048x1536.jpg")),
        ("sha256", "application/octet-stream", big),
        ("exif-strip", "image/jpeg", fixture("photo-with-gps.jpg")),
    ];
    let budget = Budget {
        fuel: u64::MAX / 4,
        timeout_ms: 60_000,
        memory_bytes: 512 << 20,
        read_bytes: 1 << 30,
        output_bytes: 1 << 30,
        ..Budget::default()
    };
    let runtimes = [(true, runtime(true)), (false, runtime(false))];
    for (name, content_type, input) in cases {
        let mut group = c.benchmark_group(format!("fuel_cost/{name}"));
        group.sample_size(10);
        let bytes = component(name);
        for (fuel_metering, runtime) in &runtimes {
            let plugin = runtime
                .load(name, &bytes, budget, cache(name))
                .expect("load");
            let upload = UploadInfo {
                id: "bench".into(),
                content_type: content_type.into(),
                ..UploadInfo::default()
            };
            let content: Arc<dyn ContentSource> = Arc::new(input.clone());
            let label = if *fuel_metering {
                "fuel_on"
            } else {
                "fuel_off"
            };
            group.bench_function(label, |b| {
                b.to_async(&tokio).iter(|| async {
                    let done = plugin.invoke(&upload, Arc::clone(&content)).await;
                    assert!(done.outcome.is_ok(), "{:?}", done.outcome);
                });
            });
        }
        group.finish();
    }
}

criterion_group!(
    benches,
    invocation,
    floor_noop_host,
    floor_empty_component_and_parts,
    fuel_cost
);
criterion_main!(benches);

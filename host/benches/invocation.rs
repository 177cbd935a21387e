//! Invocation overhead: fresh store + instantiate + call + one cache get, for
//! the `trivial` plugin, with fuel metering on and off, beside the floor of
//! instantiating an empty one-page component on the same engine settings;
//! and what fuel
//! metering costs on real plugins (`thumbnail` on a 2048x1536 photo,
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
    for fuel_metering in [true, false] {
        let runtime = runtime(fuel_metering);
        let plugin = runtime
            .load("trivial", &bytes, Budget::default(), cache("trivial"))
            .expect("load");
        let upload = UploadInfo {
            id: "bench".into(),
            content_type: "text/plain".into(),
            ..UploadInfo::default()
        };
        let content: Arc<dyn ContentSource> = Arc::new(Bytes::from_static(b"hello"));
        let name = if fuel_metering { "fuel_on" } else { "fuel_off" };
        group.bench_function(name, |b| {
            b.to_async(&tokio).iter(|| async {
                let done = plugin.invoke(&upload, Arc::clone(&content)).await;
                assert!(done.outcome.is_ok());
            });
        });
    }
    group.finish();
}

/// The floor beside `invoke_trivial`: a fresh store and the instantiation
/// of an empty component with one memory page, from an `InstancePre`, on
/// an engine with the service's settings (pooling, fuel, epochs).
fn floor_empty_component(c: &mut Criterion) {
    let config = RuntimeConfig::default();
    let engine =
        wasmtime::Engine::new(&airlock::runtime::engine_config(&config, true)).expect("engine");
    let component = wasmtime::component::Component::new(
        &engine,
        r#"(component
            (core module $m (memory (export "memory") 1))
            (core instance (instantiate $m)))"#,
    )
    .expect("empty component");
    let linker = wasmtime::component::Linker::<()>::new(&engine);
    let pre = linker.instantiate_pre(&component).expect("instance pre");
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let mut group = c.benchmark_group("invoke_trivial");
    group.bench_function("floor_empty_component", |b| {
        b.to_async(&tokio).iter(|| async {
            let mut store = wasmtime::Store::new(&engine, ());
            store.set_fuel(1_000_000).expect("fuel");
            store.set_epoch_deadline(1);
            pre.instantiate_async(&mut store)
                .await
                .expect("instantiate");
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

criterion_group!(benches, invocation, floor_empty_component, fuel_cost);
criterion_main!(benches);

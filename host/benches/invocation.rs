//! Invocation overhead: fresh store + instantiate + call + one cache get, for
//! the `trivial` plugin, with fuel metering on and off.
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

fn trivial() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist/trivial.wasm");
    std::fs::read(&path).expect("plugins/dist/trivial.wasm: run scripts/build-plugins.sh")
}

fn invocation(c: &mut Criterion) {
    let bytes = trivial();
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let mut group = c.benchmark_group("invoke_trivial");
    for fuel_metering in [true, false] {
        let runtime = PluginRuntime::new(RuntimeConfig {
            fuel_metering,
            compiler_program: Some(env!("CARGO_BIN_EXE_airlock").into()),
            ..RuntimeConfig::default()
        })
        .expect("runtime");
        let cache = PluginCache::new(
            Arc::new(MemoryBackend::new(16 << 20)),
            "bench",
            "trivial",
            CachePolicy::default(),
            Duration::from_millis(100),
        );
        let plugin = runtime
            .load("trivial", &bytes, Budget::default(), cache)
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

criterion_group!(benches, invocation);
criterion_main!(benches);

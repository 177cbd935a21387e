//! The post-mortem as a benchmark: 32 clients upload 256 KiB JPEGs for a
//! fixed time with Redis as the plugins' cache, (a) with the good plugins,
//! (b) plus `cache-storm` under an operator's budget, (c) plus `cache-storm`
//! with absurd budgets (what containment prevents).
//!
//!   scripts/build-plugins.sh && cargo bench -p airlock --bench incident
//!
//! Env: AIRLOCK_BENCH_SECONDS (default 15 per scenario), AIRLOCK_BENCH_CLIENTS
//! (32), AIRLOCK_TEST_REDIS_URL (redis://127.0.0.1:6379/0).

#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

#[path = "../../tests/loadgen/mod.rs"]
mod loadgen;

mod support;
use support::env_or;

use bytes::Bytes;
use loadgen::{Scenario, ScenarioReport, run_scenario};

/// A real JPEG of at least `target` bytes (noisy pixels compress badly).
fn jpeg_of_at_least(target: usize) -> Bytes {
    let mut side = 256u32;
    loop {
        let mut seed = 0x2545_f491_u32;
        let img = image::RgbImage::from_fn(side, side, |x, y| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let n = (seed & 0x3f) as u8;
            image::Rgb([(x % 256) as u8 ^ n, (y % 256) as u8, 128u8.wrapping_add(n)])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&img)
            .expect("encode");
        if out.get_ref().len() >= target {
            return out.into_inner().into();
        }
        side += 32;
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let seconds: u64 = env_or("AIRLOCK_BENCH_SECONDS", 15);
    let clients: usize = env_or("AIRLOCK_BENCH_CLIENTS", 32);
    let redis = std::env::var("AIRLOCK_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let plugins = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    let body = jpeg_of_at_least(256 << 10);
    println!(
        "body: {} bytes of JPEG; {clients} clients; {seconds} s per scenario; redis {redis}",
        body.len()
    );
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let mut reports: Vec<ScenarioReport> = Vec::new();
    for scenario in [
        Scenario::GoodOnly,
        Scenario::WithStorm,
        Scenario::StormUncontained,
    ] {
        let report = runtime
            .block_on(run_scenario(
                scenario,
                &plugins,
                &redis,
                body.clone(),
                clients,
                Duration::from_secs(seconds),
                std::path::Path::new(env!("CARGO_BIN_EXE_airlock")),
            ))
            .expect("scenario");
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
        reports.push(report);
    }
    println!();
    println!(
        "| scenario | uploads | failed | p50 ms | p99 ms | max ms | uploads/s | redis cmds/s | cache-storm runs | cache-storm state |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &reports {
        println!(
            "| {:?} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {} | {} |",
            r.scenario,
            r.load.requests,
            r.load.failed,
            r.load.p50_ms,
            r.load.p99_ms,
            r.load.max_ms,
            r.load.throughput_rps,
            r.redis_commands_per_s,
            r.storm_invocations,
            r.storm_state.as_deref().unwrap_or("-"),
        );
    }
    let (a, b) = (&reports[0], &reports[1]);
    println!();
    println!(
        "targets: p99(b)/p99(a) = {:.2} (<= 1.2); cache-storm ran {} times before quarantine (<= 5); failed uploads (b) = {} (0)",
        b.load.p99_ms / a.load.p99_ms.max(f64::EPSILON),
        b.storm_invocations,
        b.load.failed,
    );
}

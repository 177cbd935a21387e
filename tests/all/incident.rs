//! The post-mortem's scenario, short: concurrent uploads with `cache-storm`
//! installed. It is quarantined within a few uploads and no upload fails.
//! (Latency targets are measured by `cargo bench --bench incident`.)

use std::time::Duration;

use crate::loadgen::{Scenario, run_scenario};

use crate::common::*;
use crate::harness::redis_url;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_storm_under_load_is_quarantined_and_no_upload_fails() {
    let plugins = plugin_path("cache-storm").parent().unwrap().to_path_buf();
    let body = fixture_bytes("photo-with-gps.jpg");
    let report = run_scenario(
        Scenario::WithStorm,
        &plugins,
        &redis_url(),
        body,
        8,
        Duration::from_secs(3),
        &compiler(),
    )
    .await
    .unwrap();
    assert!(report.load.requests >= 8, "{report:?}");
    assert_eq!(report.load.failed, 0, "{:?}", report.load.statuses);
    assert_eq!(report.storm_state.as_deref(), Some("quarantined"));
    assert!(
        report.storm_invocations <= 5,
        "ran {} times",
        report.storm_invocations
    );
}

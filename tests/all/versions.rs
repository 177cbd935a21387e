//! WIT versions: the host runs components built against every
//! `airlock:plugin` version it lists (`PLUGIN_VERSIONS`), not only the
//! current one. `trivial-0.1.0.wasm` is the `trivial` plugin as built
//! against 0.1.0 and `sha256-0.1.1.wasm` the `sha256` plugin as built
//! against 0.1.1, kept as they were; 0.1.1 added `content.sha256`, 0.1.2
//! `cache.wait`.

use std::sync::Arc;

use airlock::runtime::{HookOutput, PLUGIN_VERSIONS, UploadInfo};
use bytes::Bytes;

use crate::common::*;

#[tokio::test]
async fn a_component_built_against_0_1_0_still_loads_and_runs() {
    let old = std::fs::read(fixture("trivial-0.1.0.wasm")).unwrap();
    let plugin = runtime()
        .load(
            "trivial-0.1.0",
            &old,
            roomy(),
            plugin_cache(&memory_backend(), "trivial-0.1.0", Default::default()),
        )
        .unwrap();
    // It imports and exports the 0.1.0 names, which the host resolves to
    // the current interfaces.
    let info = plugin.info();
    assert!(
        info.imports
            .iter()
            .any(|i| i == "airlock:plugin/cache@0.1.0"),
        "{info:?}"
    );
    assert!(
        info.exports
            .iter()
            .any(|e| e == "airlock:plugin/pre-store@0.1.0"),
        "{info:?}"
    );
    let invocation = invoke(&plugin, "text/plain", Bytes::from_static(b"hello")).await;
    assert!(
        matches!(invocation.outcome, Ok(HookOutput::Verdict(_))),
        "{:?}",
        invocation.outcome
    );
    // And the current build of the same plugin targets the current version.
    let current = load("trivial", roomy());
    let current_version = PLUGIN_VERSIONS[PLUGIN_VERSIONS.len() - 1];
    assert!(
        current
            .info()
            .exports
            .iter()
            .any(|e| *e == format!("airlock:plugin/pre-store@{current_version}")),
        "{:?}",
        current.info()
    );
}

/// `content.sha256` answers the digest the host computed as the bytes
/// arrived, without the plugin reading a byte (0.1.1's `sha256` plugin).
#[tokio::test]
async fn content_sha256_is_the_hosts_digest_and_costs_no_reads() {
    let plugin = load("sha256", roomy());
    let bytes = Bytes::from(vec![7u8; 3 << 20]);
    let digest = sha(&bytes);
    let upload = UploadInfo {
        sha256: digest.clone(),
        ..upload("application/octet-stream")
    };
    let invocation = plugin.invoke(&upload, Arc::new(bytes.clone())).await;
    assert_eq!(invocation.report.usage.read_bytes, 0);
    let fuel = invocation.report.fuel_used.unwrap();
    assert!(fuel < 1_000_000, "{fuel} fuel for a digest the host had");
    let verdict = verdict(invocation);
    assert_eq!(meta(&verdict, "sha256"), Some(digest.as_str()));
    // Without one (a tool's invocation), the host computes it.
    let verdict = verdict_of(&plugin, bytes.clone()).await;
    assert_eq!(meta(&verdict, "sha256"), Some(sha(&bytes).as_str()));
}

async fn verdict_of(plugin: &airlock::runtime::Plugin, bytes: Bytes) -> airlock::runtime::Verdict {
    verdict(invoke(plugin, "application/octet-stream", bytes).await)
}

/// The previous version's build of `sha256` (0.1.1, which added the
/// `content.sha256` it calls) runs on the current host.
#[tokio::test]
async fn a_component_built_against_0_1_1_still_loads_and_runs() {
    let old = std::fs::read(fixture("sha256-0.1.1.wasm")).unwrap();
    let plugin = runtime()
        .load(
            "sha256-0.1.1",
            &old,
            roomy(),
            plugin_cache(&memory_backend(), "sha256-0.1.1", Default::default()),
        )
        .unwrap();
    assert!(
        plugin
            .info()
            .imports
            .iter()
            .any(|i| i == "airlock:plugin/types@0.1.1"),
        "{:?}",
        plugin.info()
    );
    let bytes = Bytes::from_static(b"hello");
    let verdict = verdict_of(&plugin, bytes.clone()).await;
    assert_eq!(meta(&verdict, "sha256"), Some(sha(&bytes).as_str()));
}

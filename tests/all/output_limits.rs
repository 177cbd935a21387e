//! What a plugin returns is counted before it is copied: metadata entries
//! and derived artifacts have budgets of their own, and every entry costs
//! `OUTPUT_ENTRY_COST` output bytes on top of its bytes.

use std::time::{Duration, Instant};

use airlock::budget::{Budget, Limit, OUTPUT_ENTRY_COST};
use airlock::runtime::{HookOutput, Invocation, InvokeError, Verdict};

use crate::common::*;
use crate::inline::*;

async fn run(plugin: &airlock::runtime::Plugin) -> Invocation {
    invoke(plugin, "image/png", fixture_bytes("picture.png")).await
}

fn assert_stopped_exactly(invocation: Invocation, limit: Limit, used: u64, allowed: u64) {
    match error(invocation) {
        InvokeError::BudgetExceeded {
            limit: hit,
            used: u,
            allowed: a,
            ..
        } => assert_eq!((hit, u, a), (limit, used, allowed)),
        other => panic!("expected a {limit} stop, got {other:?}"),
    }
}

fn keys(n: usize) -> Vec<(String, String)> {
    (0..n).map(|i| (format!("k{i}"), String::new())).collect()
}

fn metadata_plugin(n: usize, budget: Budget) -> airlock::runtime::Plugin {
    let entries = keys(n);
    let refs: Vec<(&str, &str)> = entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    accepting_with_metadata(&refs).load(budget)
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("artifact-{i}")).collect()
}

#[tokio::test]
async fn a_million_metadata_entries_are_refused_before_any_is_copied() {
    // A million entries cost the host ~48 MB to lift: more than a 32 MiB
    // output budget lets it copy, so the lift itself is refused.
    let plugin = load("metadata-flood", roomy());
    let started = Instant::now();
    let invocation = run(&plugin).await;
    let took = started.elapsed();
    match error(invocation) {
        InvokeError::BudgetExceeded {
            limit,
            used,
            allowed,
            ..
        } => {
            assert_eq!(limit, Limit::OutputBytes);
            assert_eq!(allowed, Budget::default().output_bytes);
            assert!(used > allowed && used < allowed + (1 << 20), "{used}");
        }
        other => panic!("{other:?}"),
    }
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn a_million_metadata_entries_within_the_copy_allowance_are_counted() {
    // With room to copy them, the count is what stops them, exactly.
    let plugin = load(
        "metadata-flood",
        Budget {
            output_bytes: 128 << 20,
            ..roomy()
        },
    );
    assert_stopped_exactly(
        run(&plugin).await,
        Limit::MetadataEntries,
        1_000_000,
        Budget::default().metadata_entries,
    );
}

#[tokio::test]
async fn five_thousand_derived_artifacts_are_refused_before_any_is_copied() {
    let invocation = run(&load("derived-flood", roomy())).await;
    assert_stopped_exactly(
        invocation,
        Limit::DerivedArtifacts,
        5_000,
        Budget::default().derived_artifacts,
    );
}

#[tokio::test]
async fn metadata_entries_exact_allowance_passes_one_more_stops() {
    let allowed = Budget::default().metadata_entries;
    assert_eq!(allowed, 64);
    let ok = run(&metadata_plugin(64, roomy())).await;
    match ok.outcome {
        Ok(HookOutput::Verdict(Verdict::Accept { metadata })) => {
            assert_eq!(metadata, keys(64));
        }
        other => panic!("{other:?}"),
    }
    assert_stopped_exactly(
        run(&metadata_plugin(65, roomy())).await,
        Limit::MetadataEntries,
        65,
        64,
    );
    // The allowance is the budget's, not a constant.
    let roomier = Budget {
        metadata_entries: 65,
        ..roomy()
    };
    assert!(run(&metadata_plugin(65, roomier)).await.outcome.is_ok());
    let tighter = Budget {
        metadata_entries: 3,
        ..roomy()
    };
    assert_stopped_exactly(
        run(&metadata_plugin(4, tighter)).await,
        Limit::MetadataEntries,
        4,
        3,
    );
}

#[tokio::test]
async fn derived_artifacts_exact_allowance_passes_one_more_stops() {
    let allowed = Budget::default().derived_artifacts;
    assert_eq!(allowed, 16);
    let ok = run(&deriving(&names(16)).load(roomy())).await;
    match ok.outcome {
        Ok(HookOutput::Derived(items)) => {
            let got: Vec<_> = items.iter().map(|d| d.name.clone()).collect();
            assert_eq!(got, names(16));
        }
        other => panic!("{other:?}"),
    }
    assert_stopped_exactly(
        run(&deriving(&names(17)).load(roomy())).await,
        Limit::DerivedArtifacts,
        17,
        16,
    );
}

#[tokio::test]
async fn every_metadata_entry_costs_output_bytes_even_when_empty() {
    // 64 entries "k0".."k63" with empty values.
    let bytes: u64 = keys(64)
        .iter()
        .map(|(k, v)| (k.len() + v.len()) as u64)
        .sum();
    let cost = bytes + 64 * OUTPUT_ENTRY_COST;
    let ok = run(&metadata_plugin(64, roomy())).await;
    assert!(ok.outcome.is_ok(), "{:?}", ok.outcome);
    assert_eq!(ok.report.usage.output_bytes, cost);
    let exact = Budget {
        output_bytes: cost,
        ..roomy()
    };
    assert!(run(&metadata_plugin(64, exact)).await.outcome.is_ok());
    let under = Budget {
        output_bytes: cost - 1,
        ..roomy()
    };
    match error(run(&metadata_plugin(64, under)).await) {
        InvokeError::BudgetExceeded { limit, allowed, .. } => {
            assert_eq!((limit, allowed), (Limit::OutputBytes, cost - 1))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn every_derived_artifact_costs_output_bytes_even_when_empty() {
    let names = names(16);
    let content_type = "application/octet-stream".len() as u64;
    let cost: u64 = names
        .iter()
        .map(|n| n.len() as u64 + content_type + OUTPUT_ENTRY_COST)
        .sum();
    let ok = run(&deriving(&names).load(roomy())).await;
    assert!(ok.outcome.is_ok(), "{:?}", ok.outcome);
    assert_eq!(ok.report.usage.output_bytes, cost);
    let under = Budget {
        output_bytes: cost - 1,
        ..roomy()
    };
    assert_eq!(
        error(run(&deriving(&names).load(under)).await).limit(),
        Some(Limit::OutputBytes)
    );
}

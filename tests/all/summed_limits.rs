//! `memory_bytes` and `table_elements` are budgets of the whole invocation:
//! summed over every linear memory and every table of every core instance,
//! so spreading an allocation over several instances does not escape them.

use airlock::budget::{Budget, Limit};
use airlock::runtime::Invocation;

use crate::common::*;

/// What multi-memory holds at its peak: four memories of 192 pages.
const MULTI_MEMORY_PEAK: u64 = 4 * 192 * 65536;

async fn run(name: &str, budget: Budget) -> Invocation {
    invoke(
        &load(name, budget),
        "image/png",
        fixture_bytes("picture.png"),
    )
    .await
}

#[tokio::test]
async fn memories_of_several_instances_are_summed_against_memory_bytes() {
    // No single memory passes 12 MiB; together they pass 16 MiB.
    let used = assert_stopped(
        run(
            "multi-memory",
            Budget {
                memory_bytes: 16 << 20,
                ..roomy()
            },
        )
        .await,
        Limit::Memory,
        16 << 20,
    );
    assert!(used > 16 << 20);
}

#[tokio::test]
async fn the_peak_memory_reported_is_the_sum_of_every_memory() {
    let ok = run(
        "multi-memory",
        Budget {
            memory_bytes: 64 << 20,
            ..roomy()
        },
    )
    .await;
    assert!(ok.outcome.is_ok(), "{:?}", ok.outcome);
    let peak = ok.report.usage.peak_memory_bytes;
    assert!(
        peak >= MULTI_MEMORY_PEAK,
        "peak {peak} < the {MULTI_MEMORY_PEAK} bytes the four memories hold"
    );
    // Exactly the peak is allowed; a byte less is stopped.
    let exact = run(
        "multi-memory",
        Budget {
            memory_bytes: peak,
            ..roomy()
        },
    )
    .await;
    assert!(exact.outcome.is_ok(), "{:?}", exact.outcome);
    assert_stopped(
        run(
            "multi-memory",
            Budget {
                memory_bytes: peak - 1,
                ..roomy()
            },
        )
        .await,
        Limit::Memory,
        peak - 1,
    );
}

#[tokio::test]
async fn tables_of_several_instances_are_summed_against_table_elements() {
    // Eight tables of 15,000: each far under the default 100,000, together
    // 120,000.
    let default = Budget::default().table_elements;
    assert_eq!(default, 100_000);
    let used = assert_stopped(
        run("table-flood", roomy()).await,
        Limit::TableElements,
        default,
    );
    assert!(used <= 120_000 + 1_000, "used {used}");
    let ok = run(
        "table-flood",
        Budget {
            table_elements: 200_000,
            ..roomy()
        },
    )
    .await;
    assert!(ok.outcome.is_ok(), "{:?}", ok.outcome);
}

#[tokio::test]
async fn the_runtime_runs_good_plugins_after_summed_limit_stops() {
    for (name, budget) in [
        (
            "multi-memory",
            Budget {
                memory_bytes: 16 << 20,
                ..roomy()
            },
        ),
        ("table-flood", roomy()),
    ] {
        let _ = run(name, budget).await;
        assert_trivial_still_runs(name).await;
    }
}

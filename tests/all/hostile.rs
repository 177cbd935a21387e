//! Each hostile plugin is contained, with the right typed error.

use airlock::budget::{Budget, Limit};
use airlock::runtime::{CrashKind, InvokeError};

use crate::common::*;

async fn stop_of(name: &str, budget: Budget) -> InvokeError {
    error(
        invoke(
            &load(name, budget),
            "image/png",
            fixture_bytes("picture.png"),
        )
        .await,
    )
}

#[tokio::test]
async fn infinite_loop_runs_out_of_fuel() {
    let err = stop_of(
        "infinite-loop",
        Budget {
            fuel: 50_000_000,
            ..roomy()
        },
    )
    .await;
    assert_eq!(err.limit(), Some(Limit::Fuel), "{err}");
}

#[tokio::test]
async fn deep_recursion_is_a_stack_overflow_crash() {
    match stop_of("deep-recursion", roomy()).await {
        InvokeError::Crashed { crash, .. } => assert_eq!(crash, CrashKind::StackOverflow),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn memory_hog_hits_the_memory_limit() {
    let err = stop_of(
        "memory-hog",
        Budget {
            memory_bytes: 16 << 20,
            ..roomy()
        },
    )
    .await;
    assert_eq!(err.limit(), Some(Limit::Memory), "{err}");
}

#[tokio::test]
async fn cache_storm_is_stopped_at_the_cache_call_limit() {
    match stop_of(
        "cache-storm",
        Budget {
            cache_calls: 32,
            ..roomy()
        },
    )
    .await
    {
        InvokeError::BudgetExceeded {
            limit,
            used,
            allowed,
            plugin,
        } => {
            assert_eq!((limit, used, allowed), (Limit::CacheCalls, 33, 32));
            assert_eq!(plugin, "cache-storm");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn cache_storm_with_room_for_calls_hits_the_write_bytes_limit() {
    let budget = Budget {
        cache_calls: 1_000_000,
        cache_write_bytes: 64 << 10,
        ..roomy()
    };
    let err = stop_of("cache-storm", budget).await;
    assert_eq!(err.limit(), Some(Limit::CacheWriteBytes), "{err}");
}

#[tokio::test]
async fn huge_output_hits_the_output_limit() {
    let err = stop_of(
        "huge-output",
        Budget {
            output_bytes: 1 << 20,
            ..roomy()
        },
    )
    .await;
    assert_eq!(err.limit(), Some(Limit::OutputBytes), "{err}");
}

#[tokio::test]
async fn panic_is_a_crash_carrying_the_panic_message() {
    match stop_of("panic", roomy()).await {
        InvokeError::Crashed { crash, detail, .. } => {
            assert_eq!(crash, CrashKind::Panic);
            assert!(detail.contains("boom"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn hostile_plugins_leave_the_runtime_usable() {
    // After every kind of stop, the same engine still runs a good plugin.
    for (name, budget) in [
        (
            "infinite-loop",
            Budget {
                fuel: 10_000_000,
                ..roomy()
            },
        ),
        (
            "memory-hog",
            Budget {
                memory_bytes: 8 << 20,
                ..roomy()
            },
        ),
        ("deep-recursion", roomy()),
    ] {
        let _ = stop_of(name, budget).await;
        assert_trivial_still_runs(name).await;
    }
}

//! What the operator dashboard shows of one plugin's invocations since it
//! was loaded: outcomes, budget stops by limit, fuel and cache operations
//! used, and latency quantiles over the most recent invocations (recent,
//! so a plugin that turns slow shows it at once rather than after its
//! history is outweighed).

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::runtime::Invocation;

/// Invocations the latency quantiles are taken over.
pub const LATENCY_WINDOW: usize = 1024;

/// Counts by outcome, limit and operation, and recent latency.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Invocations by outcome (`ok`, `budget_exceeded`, `crashed`, …).
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Budget stops by limit (`fuel`, `timeout_ms`, …).
    pub budget_stops: BTreeMap<&'static str, u64>,
    /// Fuel used by every invocation together.
    pub fuel: u64,
    /// Cache operations by kind (`get`, `set`, `add`, `delete`).
    pub cache_ops: BTreeMap<&'static str, u64>,
    /// Wall-clock time of the last [`LATENCY_WINDOW`] invocations.
    pub latency_ms: Latency,
}

/// Latency quantiles (nearest rank) over recent invocations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median, in milliseconds.
    pub p50: f64,
    /// 99th percentile, in milliseconds.
    pub p99: f64,
    /// Invocations these are taken over (0: none yet).
    pub samples: usize,
}

/// Keeps a [`Tally`] up to date.
#[derive(Debug, Default)]
pub(super) struct Recorder {
    tally: Tally,
    recent: VecDeque<f64>,
}

impl Recorder {
    /// Counts one finished invocation.
    pub(super) fn record<T>(&mut self, invocation: &Invocation<T>) {
        let tally = &mut self.tally;
        *tally.outcomes.entry(invocation.outcome_key()).or_default() += 1;
        if let Some(limit) = invocation.outcome.as_ref().err().and_then(|e| e.limit()) {
            *tally.budget_stops.entry(limit.key()).or_default() += 1;
        }
        let report = &invocation.report;
        tally.fuel = tally.fuel.saturating_add(report.fuel_used.unwrap_or(0));
        for (op, n) in report.usage.cache_ops.by_kind() {
            let count = tally.cache_ops.entry(op).or_default();
            *count = count.saturating_add(n);
        }
        if self.recent.len() == LATENCY_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(report.wall_time_ms);
    }

    /// The tally now, with the quantiles of the current window.
    pub(super) fn tally(&self) -> Tally {
        let mut sorted: Vec<f64> = self.recent.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            // Nearest rank: the smallest value with at least q of them at
            // or below it.
            let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[i]
        };
        let latency_ms = if sorted.is_empty() {
            Latency::default()
        } else {
            Latency {
                p50: rank(0.50),
                p99: rank(0.99),
                samples: sorted.len(),
            }
        };
        Tally {
            latency_ms,
            ..self.tally.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{Budget, Limit};
    use crate::runtime::{InvokeError, Usage, UsageReport};

    fn invocation(ms: f64, outcome: Result<(), InvokeError>) -> Invocation<()> {
        let mut usage = Usage::default();
        usage.cache_ops.get = 2;
        let report = UsageReport {
            fuel_used: Some(10),
            usage,
            wall_time_ms: ms,
            budget: Budget::default(),
        };
        Invocation { outcome, report }
    }

    #[test]
    fn counts_outcomes_stops_and_usage() {
        let mut recorder = Recorder::default();
        recorder.record(&invocation(1.0, Ok(())));
        recorder.record(&invocation(
            2.0,
            Err(InvokeError::BudgetExceeded {
                plugin: "p".into(),
                limit: Limit::Fuel,
                used: 11,
                allowed: 10,
            }),
        ));
        let tally = recorder.tally();
        assert_eq!(tally.outcomes.get("ok"), Some(&1));
        assert_eq!(tally.outcomes.get("budget_exceeded"), Some(&1));
        assert_eq!(tally.budget_stops.get("fuel"), Some(&1));
        assert_eq!(tally.fuel, 20);
        assert_eq!(tally.cache_ops.get("get"), Some(&4));
        assert_eq!(tally.cache_ops.get("set"), Some(&0));
    }

    #[test]
    fn quantiles_are_nearest_rank_over_the_recent_window() {
        let mut recorder = Recorder::default();
        assert_eq!(recorder.tally().latency_ms.samples, 0);
        // 1..=100 ms: p50 is 50, p99 is 99.
        for ms in 1..=100 {
            recorder.record(&invocation(f64::from(ms), Ok(())));
        }
        let latency = recorder.tally().latency_ms;
        assert_eq!(
            (latency.p50, latency.p99, latency.samples),
            (50.0, 99.0, 100)
        );
        // A window's worth of slow ones pushes every fast one out.
        for _ in 0..LATENCY_WINDOW {
            recorder.record(&invocation(500.0, Ok(())));
        }
        let latency = recorder.tally().latency_ms;
        assert_eq!((latency.p50, latency.p99), (500.0, 500.0));
        assert_eq!(latency.samples, LATENCY_WINDOW);
    }
}

//! Containment of each plugin: a bulkhead on concurrent invocations and a
//! circuit breaker that quarantines a plugin after repeated budget stops or
//! crashes. Quarantine is kept in the cache backend, so with Redis every node
//! stops the plugin, not only the one that saw the violations; an operator
//! re-enables it.

mod state;
mod tally;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, SemaphorePermit};

pub use self::state::{PluginState, StateRecord, StateStore};
pub use self::tally::{LATENCY_WINDOW, Latency, Tally};
use crate::budget::Limit;
use crate::cache::BackendError;
use crate::metrics::Metrics;
use crate::runtime::{Invocation, InvokeError};

/// How stale a node's view of the shared plugin state may be.
const STATE_REFRESH: Duration = Duration::from_millis(250);

/// Operator-set containment of one plugin (`[plugins.containment]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Containment {
    /// Invocations of this plugin running at once (the bulkhead).
    pub max_concurrency: u32,
    /// How long a post-store invocation waits for a slot before its job is
    /// tried again later. (A processor waits up to its upload's deadline:
    /// load alone never skips it.)
    pub max_wait_ms: u64,
    /// Budget stops or crashes within `window_seconds` that quarantine it.
    pub quarantine_after: u32,
    /// The window for `quarantine_after`.
    pub window_seconds: u64,
}

impl Default for Containment {
    fn default() -> Self {
        Self {
            max_concurrency: 16,
            max_wait_ms: 100,
            quarantine_after: 3,
            window_seconds: 60,
        }
    }
}

/// Why a plugin was not invoked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Quarantined by its circuit breaker.
    #[error("plugin `{plugin}` is quarantined: {reason}")]
    Quarantined {
        /// The plugin.
        plugin: String,
        /// The violation that tripped it.
        reason: String,
    },
    /// Disabled by an operator.
    #[error("plugin `{plugin}` is disabled by an operator")]
    Disabled {
        /// The plugin.
        plugin: String,
    },
    /// Its bulkhead stayed full for as long as the invocation could wait.
    #[error(
        "plugin `{plugin}` is busy: {running} invocations running, none finished within {waited_ms} ms"
    )]
    Busy {
        /// The plugin.
        plugin: String,
        /// Its `max_concurrency`.
        running: u32,
        /// How long the invocation waited.
        waited_ms: u64,
    },
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The last budget stop or crash of a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// The error.
    pub reason: String,
    /// The limit, for budget stops.
    pub limit: Option<Limit>,
}

/// Counters shown by the admin API.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GuardCounters {
    /// Invocations that ran.
    pub invocations: u64,
    /// Budget stops and crashes.
    pub violations: u64,
    /// Invocations refused: quarantined, disabled or busy.
    pub refused: u64,
    /// Invocations holding a bulkhead slot right now.
    pub running: u64,
    /// Outcomes, budget stops, usage and latency of the invocations.
    #[serde(flatten)]
    pub tally: Tally,
}

#[derive(Default)]
struct GuardState {
    recent: VecDeque<Instant>,
    view: Option<StateRecord>,
    viewed_at: Option<Instant>,
    // A trip whose publication to the shared store failed; retried.
    unpublished: Option<StateRecord>,
    counters: GuardCounters,
    recorder: tally::Recorder,
    last_violation: Option<Violation>,
    // Bumped by every local change of state, so a refresh that read the
    // store before the change does not undo it.
    generation: u64,
}

/// One plugin's bulkhead and circuit breaker.
pub struct Guard {
    containment: Containment,
    bulkhead: Semaphore,
    shared: Arc<Shared>,
}

/// The part of a guard that background state refreshes also hold.
struct Shared {
    plugin: String,
    store: Arc<StateStore>,
    metrics: Arc<Metrics>,
    state: Mutex<GuardState>,
    refreshing: AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, GuardState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_fresh(&self) -> bool {
        self.lock()
            .viewed_at
            .is_some_and(|at| at.elapsed() < STATE_REFRESH)
    }

    /// Reads the shared state (publishing a pending trip first). A store
    /// that does not answer leaves the last view in place.
    async fn refresh(&self) {
        let (unpublished, generation) = {
            let state = self.lock();
            (state.unpublished.clone(), state.generation)
        };
        if let Some(record) = &unpublished
            && self.store.set(&self.plugin, record).await.is_ok()
        {
            self.lock().unpublished = None;
        }
        let fetched = self.store.get(&self.plugin).await;
        let mut state = self.lock();
        if state.generation != generation {
            return;
        }
        state.viewed_at = Some(Instant::now());
        if let Ok(record) = fetched {
            state.view = record.or_else(|| state.unpublished.clone());
        }
        self.metrics
            .plugin_active(&self.plugin, state.view.is_none());
    }
}

impl Guard {
    /// A guard for `plugin`.
    pub fn new(
        plugin: &str,
        containment: Containment,
        store: Arc<StateStore>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            containment,
            bulkhead: Semaphore::new(containment.max_concurrency.max(1) as usize),
            shared: Arc::new(Shared {
                plugin: plugin.into(),
                store,
                metrics,
                state: Mutex::default(),
                refreshing: AtomicBool::new(false),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GuardState> {
        self.shared.lock()
    }

    /// The containment settings.
    pub fn containment(&self) -> &Containment {
        &self.containment
    }

    /// Current counters and last violation.
    pub fn counters(&self) -> (GuardCounters, Option<Violation>) {
        let state = self.lock();
        let slots = self.containment.max_concurrency.max(1) as usize;
        let running = slots.saturating_sub(self.bulkhead.available_permits()) as u64;
        let counters = GuardCounters {
            invocations: state.counters.invocations,
            violations: state.counters.violations,
            refused: state.counters.refused,
            running,
            tally: state.recorder.tally(),
        };
        (counters, state.last_violation.clone())
    }

    /// This node's view of the shared state, refreshed first when stale.
    pub async fn state(&self) -> Option<StateRecord> {
        if !self.shared.is_fresh() {
            self.shared.refresh().await;
        }
        self.lock().view.clone()
    }

    /// The current view without waiting: a stale view is refreshed in the
    /// background, so a slow or dead store never delays an upload.
    fn state_now(&self) -> Option<StateRecord> {
        if !self.shared.is_fresh() && !self.shared.refreshing.swap(true, Ordering::AcqRel) {
            let shared = Arc::clone(&self.shared);
            tokio::spawn(async move {
                shared.refresh().await;
                shared.refreshing.store(false, Ordering::Release);
            });
        }
        self.lock().view.clone()
    }

    /// Admits one invocation, waiting for a bulkhead slot until `until`,
    /// or says why not.
    pub async fn admit(&self, until: tokio::time::Instant) -> Result<SemaphorePermit<'_>, Refusal> {
        let started = tokio::time::Instant::now();
        let result = match self.refusal() {
            Some(refusal) => Err(refusal),
            None => match tokio::time::timeout_at(until, self.bulkhead.acquire()).await {
                // Checked again: the plugin may have been quarantined
                // while this invocation waited for a slot.
                Ok(Ok(permit)) => match self.refusal() {
                    Some(refusal) => Err(refusal),
                    None => Ok(permit),
                },
                _ => Err(Refusal::Busy {
                    plugin: self.shared.plugin.clone(),
                    running: self.containment.max_concurrency,
                    waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                }),
            },
        };
        if result.is_err() {
            self.lock().counters.refused += 1;
        }
        result
    }

    /// Why the plugin may not run now, from this node's current view.
    fn refusal(&self) -> Option<Refusal> {
        let plugin = self.shared.plugin.clone();
        match self.state_now()? {
            StateRecord {
                state: PluginState::Disabled,
                ..
            } => Some(Refusal::Disabled { plugin }),
            StateRecord { reason, .. } => Some(Refusal::Quarantined { plugin, reason }),
        }
    }

    /// Counts an invocation; trips the breaker on repeated violations.
    pub async fn record<T>(&self, invocation: &Invocation<T>) {
        let err = match &invocation.outcome {
            Err(err @ (InvokeError::BudgetExceeded { .. } | InvokeError::Crashed { .. })) => {
                Some(err)
            }
            _ => None,
        };
        let trip = {
            let mut state = self.lock();
            state.counters.invocations += 1;
            state.recorder.record(invocation);
            let Some(err) = err else { return };
            state.counters.violations += 1;
            let now = Instant::now();
            let window = Duration::from_secs(self.containment.window_seconds);
            state.recent.push_back(now);
            while state
                .recent
                .front()
                .is_some_and(|t| now.duration_since(*t) > window)
            {
                state.recent.pop_front();
            }
            state.last_violation = Some(Violation {
                at: now_secs(),
                reason: err.to_string(),
                limit: err.limit(),
            });
            let count = state.recent.len();
            if count >= self.containment.quarantine_after.max(1) as usize && state.view.is_none() {
                let record = StateRecord {
                    state: PluginState::Quarantined,
                    since: now_secs(),
                    reason: format!(
                        "{count} violations within {} s; last: {err}",
                        self.containment.window_seconds
                    ),
                };
                state.view = Some(record.clone());
                state.viewed_at = Some(now);
                state.generation += 1;
                Some(record)
            } else {
                None
            }
        };
        if let Some(record) = trip {
            tracing::error!(plugin = %self.shared.plugin, reason = %record.reason, "plugin quarantined");
            self.shared
                .metrics
                .plugin_active(&self.shared.plugin, false);
            if let Err(e) = self.shared.store.set(&self.shared.plugin, &record).await {
                tracing::warn!(plugin = %self.shared.plugin, error = %crate::text::chain(&e), "cannot share quarantine yet; will retry");
                self.lock().unpublished = Some(record);
            }
        }
    }

    /// Operator: invoke the plugin again; forgets its recent violations.
    pub async fn enable(&self) -> Result<(), BackendError> {
        self.shared.store.clear(&self.shared.plugin).await?;
        let mut state = self.lock();
        state.recent.clear();
        state.view = None;
        state.unpublished = None;
        state.viewed_at = Some(Instant::now());
        state.generation += 1;
        self.shared.metrics.plugin_active(&self.shared.plugin, true);
        tracing::info!(plugin = %self.shared.plugin, "plugin enabled by an operator");
        Ok(())
    }

    /// Operator: stop invoking the plugin.
    pub async fn disable(&self) -> Result<(), BackendError> {
        let record = StateRecord {
            state: PluginState::Disabled,
            since: now_secs(),
            reason: "disabled by an operator".into(),
        };
        self.shared.store.set(&self.shared.plugin, &record).await?;
        let mut state = self.lock();
        state.view = Some(record);
        state.viewed_at = Some(Instant::now());
        state.generation += 1;
        self.shared
            .metrics
            .plugin_active(&self.shared.plugin, false);
        tracing::info!(plugin = %self.shared.plugin, "plugin disabled by an operator");
        Ok(())
    }
}

//! One invocation: a fresh store under the plugin's budget, the call, and
//! the mapping of whatever stopped it to a typed outcome.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::content::ContentSource;
use super::host::{ContentHandle, HostState, Usage};
use super::load::{HookIndices, Plugin};
use crate::bindings::types;
use crate::budget::{Budget, Limit, OverBudget};

/// What the host tells a plugin about an upload.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UploadInfo {
    /// Upload id.
    pub id: String,
    /// API client name.
    pub client: String,
    /// Client-given file name.
    pub filename: String,
    /// Declared content type.
    pub content_type: String,
    /// Metadata attached so far.
    pub metadata: Vec<(String, String)>,
}

/// A processor's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Store it, with these metadata entries.
    Accept {
        /// Entries to attach.
        metadata: Vec<(String, String)>,
    },
    /// Refuse it; the reason goes to the client.
    Reject {
        /// Shown to the client.
        reason: String,
    },
    /// Store these bytes instead.
    Replace {
        /// The new bytes.
        bytes: Bytes,
        /// Their content type.
        content_type: String,
        /// Entries to attach.
        metadata: Vec<(String, String)>,
    },
}

/// An artifact an extension derived from a stored upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    /// Name, unique per upload.
    pub name: String,
    /// Content type.
    pub content_type: String,
    /// The bytes.
    pub bytes: Bytes,
}

/// What a hook returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutput {
    /// From a processor.
    Verdict(Verdict),
    /// From an extension.
    Derived(Vec<Derived>),
}

/// How a plugin crashed (as opposed to being stopped by its budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CrashKind {
    /// A Rust panic (or any `unreachable` after an error log line).
    Panic,
    /// An `unreachable` instruction.
    Unreachable,
    /// Ran out of wasm stack (runaway recursion).
    StackOverflow,
    /// Touched memory outside its linear memory.
    MemoryOutOfBounds,
    /// Any other trap (division by zero, bad cast, …).
    Trap,
}

impl fmt::Display for CrashKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CrashKind::Panic => "panic",
            CrashKind::Unreachable => "unreachable",
            CrashKind::StackOverflow => "stack overflow",
            CrashKind::MemoryOutOfBounds => "out-of-bounds memory access",
            CrashKind::Trap => "trap",
        })
    }
}

/// Why an invocation produced no usable result.
#[derive(Debug, Clone, thiserror::Error, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InvokeError {
    /// Went over a budget limit and was stopped.
    #[error("plugin `{plugin}` exceeded its {limit} budget: used {used}, allowed {allowed}")]
    BudgetExceeded {
        /// The plugin.
        plugin: String,
        /// Which limit.
        limit: Limit,
        /// Used (or asked for) when stopped.
        used: u64,
        /// The allowance.
        allowed: u64,
    },
    /// Trapped on its own.
    #[error("plugin `{plugin}` crashed ({crash}): {detail}")]
    Crashed {
        /// The plugin.
        plugin: String,
        /// What kind of crash.
        crash: CrashKind,
        /// The trap, or the panic message.
        detail: String,
    },
    /// Returned its own `plugin-error`.
    #[error("plugin `{plugin}` failed: {message}")]
    Failed {
        /// The plugin.
        plugin: String,
        /// Its message.
        message: String,
    },
    /// Returned something the host cannot accept.
    #[error("plugin `{plugin}` returned an invalid result: {reason}")]
    InvalidOutput {
        /// The plugin.
        plugin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Could not be started (instance pool full, host I/O error…).
    #[error("plugin `{plugin}` could not run: {reason}")]
    Host {
        /// The plugin.
        plugin: String,
        /// The cause.
        reason: String,
    },
}

impl InvokeError {
    /// The limit hit, for budget stops.
    pub fn limit(&self) -> Option<Limit> {
        match self {
            InvokeError::BudgetExceeded { limit, .. } => Some(*limit),
            _ => None,
        }
    }
}

/// Resources one invocation used, against its budget.
#[derive(Debug, Clone, Serialize)]
pub struct UsageReport {
    /// Fuel consumed; `None` when the runtime does not meter fuel.
    pub fuel_used: Option<u64>,
    /// Counters kept by the host.
    #[serde(flatten)]
    pub usage: Usage,
    /// Wall time of the whole invocation, instantiation included.
    pub wall_time_ms: f64,
    /// The budget it ran under.
    pub budget: Budget,
}

/// The result of one invocation and what it cost.
#[derive(Debug)]
pub struct Invocation {
    /// What the hook returned, or why it did not.
    pub outcome: Result<HookOutput, InvokeError>,
    /// What it used.
    pub report: UsageReport,
}

/// Slack on top of the budget's timeout for the outer guard: the epoch
/// deadline and host-call deadlines fire first; this only catches anything
/// that escapes both.
const OUTER_GRACE: Duration = Duration::from_millis(50);

impl Plugin {
    /// Runs the plugin once on `content`, in a fresh instance.
    #[tracing::instrument(name = "plugin", skip_all, fields(plugin = %self.name, upload = %upload.id))]
    pub async fn invoke(&self, upload: &UploadInfo, content: Arc<dyn ContentSource>) -> Invocation {
        let started = Instant::now();
        let timeout = Duration::from_millis(self.budget.timeout_ms);
        // Declared before the store so the slot is released after the
        // store (and its pooled instance) is dropped.
        let _slot = match tokio::time::timeout(timeout, self.slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            _ => {
                return Invocation {
                    outcome: Err(InvokeError::Host {
                        plugin: self.name.to_string(),
                        reason: "no free instance slot within its timeout (runtime.max_instances)"
                            .into(),
                    }),
                    report: UsageReport {
                        fuel_used: None,
                        usage: Usage::default(),
                        wall_time_ms: started.elapsed().as_secs_f64() * 1000.0,
                        budget: self.budget,
                    },
                };
            }
        };
        let size = content.size();
        let state = HostState::new(
            Arc::clone(&self.name),
            upload.id.clone(),
            self.budget,
            self.cache.clone(),
            started,
        );
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| state);
        if self.fuel_metering {
            // Cannot fail on an engine that meters fuel.
            let _ = store.set_fuel(self.budget.fuel);
        }
        // Every epoch tick, running wasm yields to the executor (so a busy
        // plugin never holds a runtime thread for more than a tick) and is
        // interrupted once its deadline has passed.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });

        let record = types::Upload {
            id: upload.id.clone(),
            client: upload.client.clone(),
            filename: upload.filename.clone(),
            content_type: upload.content_type.clone(),
            size,
            metadata: upload.metadata.clone(),
        };
        let call = self.call(&mut store, record, content);
        let raw = match tokio::time::timeout(timeout + OUTER_GRACE, call).await {
            Ok(raw) => raw,
            Err(_) => Err(wasmtime::Error::new(OverBudget {
                limit: Limit::Timeout,
                used: started.elapsed().as_millis() as u64,
                allowed: self.budget.timeout_ms,
            })),
        };

        let fuel_used = self.fuel_metering.then(|| {
            self.budget
                .fuel
                .saturating_sub(store.get_fuel().unwrap_or(0))
        });
        let outcome = match raw {
            Ok(Ok(output)) => self.check_output(output, store.data_mut()),
            Ok(Err(message)) => Err(InvokeError::Failed {
                plugin: self.name.to_string(),
                message,
            }),
            Err(trap) => Err(self.classify(&trap, store.data(), started)),
        };
        if let Err(err) = &outcome {
            tracing::warn!(error = %err, "plugin invocation failed");
        }
        let report = UsageReport {
            fuel_used,
            usage: store.data().usage,
            wall_time_ms: started.elapsed().as_secs_f64() * 1000.0,
            budget: self.budget,
        };
        Invocation { outcome, report }
    }

    /// Instantiates and calls the hook. The outer error is a trap; the inner
    /// one is the plugin's own `plugin-error`.
    async fn call(
        &self,
        store: &mut Store<HostState>,
        upload: types::Upload,
        content: Arc<dyn ContentSource>,
    ) -> wasmtime::Result<Result<HookOutput, String>> {
        let handle = store
            .data_mut()
            .table
            .push(ContentHandle { source: content })?;
        let instance = self.pre.instantiate_async(&mut *store).await?;
        let output = match &self.indices {
            HookIndices::Processor(indices) => indices
                .load(&mut *store, &instance)?
                .call_process(&mut *store, &upload, handle)
                .await?
                .map(|verdict| HookOutput::Verdict(verdict.into())),
            HookIndices::Extension(indices) => indices
                .load(&mut *store, &instance)?
                .call_on_stored(&mut *store, &upload, handle)
                .await?
                .map(|derived| HookOutput::Derived(derived.into_iter().map(Into::into).collect())),
        };
        Ok(output.map_err(|e| e.message))
    }

    /// Charges the returned bytes to `output_bytes` and validates them.
    fn check_output(
        &self,
        output: HookOutput,
        state: &mut HostState,
    ) -> Result<HookOutput, InvokeError> {
        let metadata_size = |m: &[(String, String)]| -> u64 {
            m.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
        };
        let size = match &output {
            HookOutput::Verdict(Verdict::Accept { metadata }) => metadata_size(metadata),
            HookOutput::Verdict(Verdict::Reject { reason }) => reason.len() as u64,
            HookOutput::Verdict(Verdict::Replace {
                bytes,
                content_type,
                metadata,
            }) => bytes.len() as u64 + content_type.len() as u64 + metadata_size(metadata),
            HookOutput::Derived(items) => items
                .iter()
                .map(|d| (d.bytes.len() + d.name.len() + d.content_type.len()) as u64)
                .sum(),
        };
        state.usage.output_bytes = size;
        if size > self.budget.output_bytes {
            return Err(InvokeError::BudgetExceeded {
                plugin: self.name.to_string(),
                limit: Limit::OutputBytes,
                used: size,
                allowed: self.budget.output_bytes,
            });
        }
        let invalid = |reason: String| InvokeError::InvalidOutput {
            plugin: self.name.to_string(),
            reason,
        };
        let metadata = match &output {
            HookOutput::Verdict(
                Verdict::Accept { metadata } | Verdict::Replace { metadata, .. },
            ) => metadata.as_slice(),
            _ => &[],
        };
        if let Some((key, _)) = metadata.iter().find(|(k, _)| !valid_metadata_key(k)) {
            return Err(invalid(format!(
                "metadata key {key:?} must match [a-z0-9._-]{{1,64}}"
            )));
        }
        if let HookOutput::Derived(items) = &output {
            let mut names = std::collections::HashSet::new();
            for item in items {
                if !valid_derived_name(&item.name) {
                    return Err(invalid(format!(
                        "derived name {:?} must match [a-z0-9._-]{{1,64}} and not start with '.'",
                        item.name
                    )));
                }
                if !names.insert(item.name.as_str()) {
                    return Err(invalid(format!(
                        "derived name {:?} is used twice",
                        item.name
                    )));
                }
            }
        }
        Ok(output)
    }

    fn classify(&self, trap: &wasmtime::Error, state: &HostState, started: Instant) -> InvokeError {
        let plugin = self.name.to_string();
        let over = trap
            .downcast_ref::<OverBudget>()
            .copied()
            .or(state.over_budget);
        let over = over.or_else(|| match trap.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => Some(OverBudget {
                limit: Limit::Fuel,
                used: self.budget.fuel,
                allowed: self.budget.fuel,
            }),
            Some(Trap::Interrupt) => Some(OverBudget {
                limit: Limit::Timeout,
                used: started.elapsed().as_millis() as u64,
                allowed: self.budget.timeout_ms,
            }),
            _ => None,
        });
        if let Some(OverBudget {
            limit,
            used,
            allowed,
        }) = over
        {
            return InvokeError::BudgetExceeded {
                plugin,
                limit,
                used,
                allowed,
            };
        }
        let crash = match trap.downcast_ref::<Trap>() {
            Some(Trap::UnreachableCodeReached) if state.last_error_line.is_some() => {
                CrashKind::Panic
            }
            Some(Trap::UnreachableCodeReached) => CrashKind::Unreachable,
            Some(Trap::StackOverflow) => CrashKind::StackOverflow,
            Some(Trap::MemoryOutOfBounds) => CrashKind::MemoryOutOfBounds,
            Some(_) => CrashKind::Trap,
            None => {
                return InvokeError::Host {
                    plugin,
                    reason: format!("{trap:#}"),
                };
            }
        };
        let detail = match (crash, &state.last_error_line) {
            (CrashKind::Panic, Some(line)) => line.clone(),
            _ => trap
                .downcast_ref::<Trap>()
                .map(ToString::to_string)
                .unwrap_or_default(),
        };
        InvokeError::Crashed {
            plugin,
            crash,
            detail,
        }
    }
}

fn valid_metadata_key(key: &str) -> bool {
    (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

fn valid_derived_name(name: &str) -> bool {
    valid_metadata_key(name) && !name.starts_with('.')
}

impl From<types::Verdict> for Verdict {
    fn from(verdict: types::Verdict) -> Self {
        match verdict {
            types::Verdict::Accept(metadata) => Verdict::Accept { metadata },
            types::Verdict::Reject(reason) => Verdict::Reject { reason },
            types::Verdict::Replace(r) => Verdict::Replace {
                bytes: r.bytes.into(),
                content_type: r.content_type,
                metadata: r.metadata,
            },
        }
    }
}

impl From<types::Derived> for Derived {
    fn from(d: types::Derived) -> Self {
        Derived {
            name: d.name,
            content_type: d.content_type,
            bytes: d.bytes.into(),
        }
    }
}

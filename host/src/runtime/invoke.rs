//! One invocation: a fresh store under the plugin's budget, the call, and
//! the mapping of whatever stopped it to a typed outcome.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use wasmtime::component::Resource;
use wasmtime::{CallHook, Store, Trap, UpdateDeadline};

use super::content::ContentSource;
use super::host::{ContentHandle, HostState, Usage};
use super::load::{HookKind, Plugin};
use super::output;
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
    /// Passed or returned a malformed value: a string that is not UTF-8, a
    /// pointer or length outside its memory, a misaligned pointer, a bad
    /// `realloc` answer.
    InvalidResult,
    /// Used a resource handle it does not hold: forged, already dropped,
    /// still borrowed at the end of a call, or one too many.
    BadHandle,
}

impl fmt::Display for CrashKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CrashKind::Panic => "panic",
            CrashKind::Unreachable => "unreachable",
            CrashKind::StackOverflow => "stack overflow",
            CrashKind::MemoryOutOfBounds => "out-of-bounds memory access",
            CrashKind::Trap => "trap",
            CrashKind::InvalidResult => "invalid result",
            CrashKind::BadHandle => "bad handle",
        })
    }
}

/// A fault of the guest's own that wasmtime does not report as a trap (a
/// malformed value or handle); classified as a crash of that kind.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub(super) struct GuestFault {
    pub(super) kind: CrashKind,
    pub(super) detail: String,
}

impl GuestFault {
    pub(super) fn new(kind: CrashKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

/// A failure of the host's own during an invocation (content I/O, an
/// instance that cannot be allocated): never counted against the plugin.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct HostFault(pub(super) String);

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
    /// Could not be run for a reason of the host's own (no free instance
    /// slot, content I/O error…); never the plugin's fault.
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
        // wasmtime bounds what it copies out of the guest in one transfer by
        // the store's "hostcall fuel". Host-call arguments are read lazily
        // and charged before any copy (see `host`), so while the guest runs
        // the allowance is unlimited and a refused call is still charged;
        // once it returns, the allowance is what its budget lets the result
        // be, so an oversized result is refused mid-lift (see `output`).
        let result_allowance = output::copy_allowance(&self.budget);
        store.call_hook(move |mut ctx, hook| {
            ctx.set_hostcall_fuel(match hook {
                CallHook::ReturningFromWasm => result_allowance,
                CallHook::CallingWasm | CallHook::CallingHost | CallHook::ReturningFromHost => {
                    usize::MAX
                }
            });
            Ok(())
        });
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
            Ok(Ok(output)) => self.check_output(output),
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

    /// Instantiates and calls the hook, then reads its result under the
    /// budget. The outer error is a trap; the inner one is the plugin's own
    /// `plugin-error`.
    async fn call(
        &self,
        store: &mut Store<HostState>,
        upload: types::Upload,
        content: Arc<dyn ContentSource>,
    ) -> wasmtime::Result<Result<HookOutput, String>> {
        let handle = store
            .data_mut()
            .table
            .push(ContentHandle { source: content })
            .map_err(|e| HostFault(format!("content handle: {e}")))?;
        let instance = self.pre.instantiate_async(&mut *store).await.map_err(|e| {
            // The limiter's stops and whatever happened while its start
            // functions ran (traps, bad host calls: the error carries a wasm
            // backtrace) are the plugin's; anything else (an exhausted
            // pool) is the host's.
            let guest = e.is::<OverBudget>()
                || e.is::<Trap>()
                || e.is::<GuestFault>()
                || e.is::<wasmtime::WasmBacktrace>();
            if guest {
                e
            } else {
                HostFault(format!("cannot instantiate: {e:#}")).into()
            }
        })?;
        Ok(match self.info.world {
            HookKind::Processor => {
                match self
                    .call_hook::<types::Verdict>(store, &instance, &upload, handle)
                    .await?
                {
                    Ok(verdict) => Ok(HookOutput::Verdict(output::verdict(
                        store.data_mut(),
                        verdict,
                    )?)),
                    Err(message) => Err(message),
                }
            }
            HookKind::Extension => {
                match self
                    .call_hook::<Vec<types::Derived>>(store, &instance, &upload, handle)
                    .await?
                {
                    Ok(items) => Ok(HookOutput::Derived(output::derived(
                        store.data_mut(),
                        items,
                    )?)),
                    Err(message) => Err(message),
                }
            }
        })
    }

    /// Calls the hook, whose result on success is `R`; its `plugin-error`
    /// becomes one bounded line.
    async fn call_hook<R>(
        &self,
        store: &mut Store<HostState>,
        instance: &wasmtime::component::Instance,
        upload: &types::Upload,
        handle: Resource<ContentHandle>,
    ) -> wasmtime::Result<Result<R, String>>
    where
        R: wasmtime::component::ComponentType + wasmtime::component::Lift + Send + Sync + 'static,
    {
        let func = instance
            .get_typed_func::<(&types::Upload, Resource<ContentHandle>), (Result<R, types::PluginError>,)>(
                &mut *store,
                &self.hook,
            )?;
        let (result,) = func.call_async(&mut *store, (upload, handle)).await?;
        Ok(result.map_err(output::error_message))
    }

    /// Validates names and keys of a result already read under the budget.
    fn check_output(&self, output: HookOutput) -> Result<HookOutput, InvokeError> {
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
        let content_types: Vec<&str> = match &output {
            HookOutput::Verdict(Verdict::Replace { content_type, .. }) => vec![content_type],
            HookOutput::Derived(items) => items.iter().map(|d| d.content_type.as_str()).collect(),
            HookOutput::Verdict(_) => Vec::new(),
        };
        if let Some(bad) = content_types.iter().find(|t| !valid_content_type(t)) {
            return Err(invalid(format!(
                "content type {bad:?} must be 1 to 255 visible ASCII characters"
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
        let over = over.or_else(|| self.result_too_big(trap));
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
        if let Some(fault) = trap.downcast_ref::<GuestFault>() {
            return InvokeError::Crashed {
                plugin,
                crash: fault.kind,
                detail: fault.detail.clone(),
            };
        }
        if let Some(HostFault(reason)) = trap.downcast_ref::<HostFault>() {
            return InvokeError::Host {
                plugin,
                reason: reason.clone(),
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
            // Not a trap, not the host's: wasmtime refused something the
            // guest did at the canonical-ABI boundary.
            None => abi_fault(trap),
        };
        let detail = match (crash, &state.last_error_line) {
            (CrashKind::Panic, Some(line)) => line.clone(),
            _ => match trap.downcast_ref::<Trap>() {
                Some(trap) => trap.to_string(),
                None => format!("{trap:#}"),
            },
        };
        InvokeError::Crashed {
            plugin,
            crash,
            detail,
        }
    }
}

/// wasmtime's words when a transfer passes the store's hostcall fuel.
const COPY_LIMIT_TEXT: &str = "too much data is being copied";

impl Plugin {
    /// A result bigger than `output::copy_allowance` is refused by wasmtime
    /// while lifting it (the only transfer with a finite allowance): the
    /// lift stops before the host allocates, so what it would have cost is
    /// unknown; the stop reports the allowance as used.
    fn result_too_big(&self, err: &wasmtime::Error) -> Option<OverBudget> {
        format!("{err:#}")
            .contains(COPY_LIMIT_TEXT)
            .then(|| OverBudget {
                limit: Limit::OutputBytes,
                used: output::copy_allowance(&self.budget) as u64,
                allowed: self.budget.output_bytes,
            })
    }
}

/// The kind of a canonical-ABI violation wasmtime reported as an error
/// rather than a trap. wasmtime gives these no error type, so its messages
/// are the only thing to go by; anything unrecognised is a malformed value.
fn abi_fault(err: &wasmtime::Error) -> CrashKind {
    let text = format!("{err:#}");
    if text.contains("handle") || text.contains("borrow") || text.contains("resource") {
        CrashKind::BadHandle
    } else {
        CrashKind::InvalidResult
    }
}

fn valid_metadata_key(key: &str) -> bool {
    (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// A content type the host can store and serve as a header.
fn valid_content_type(value: &str) -> bool {
    (1..=255).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

fn valid_derived_name(name: &str) -> bool {
    valid_metadata_key(name) && !name.starts_with('.')
}

//! What an invocation comes to: what a hook returned and the rules it must
//! follow, why an invocation produced nothing usable, the faults that are
//! classified into those reasons, and what the invocation used.

use std::fmt;

use bytes::Bytes;
use serde::Serialize;

use super::BoxError;
use super::host::Usage;
use crate::budget::{Budget, Limit};

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
#[error("{what}")]
pub(super) struct HostFault {
    what: &'static str,
    #[source]
    source: Option<BoxError>,
}

impl HostFault {
    /// A fault with no error behind it.
    pub(super) fn new(what: &'static str) -> Self {
        Self { what, source: None }
    }

    /// `what` failed because of `source`.
    pub(super) fn caused_by(what: &'static str, source: impl Into<BoxError>) -> Self {
        Self {
            what,
            source: Some(source.into()),
        }
    }

    /// The fault and its causes on one line, for [`InvokeError::Host`]
    /// (which is cloned and serialized, so it keeps text, not the errors).
    pub(super) fn reason(&self) -> String {
        let mut reason = self.what.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(err) = cause {
            reason.push_str(": ");
            reason.push_str(&err.to_string());
            cause = err.source();
        }
        reason
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

impl UsageReport {
    /// What was used against `limit`; `None` for fuel when it is not
    /// metered. Time is the whole invocation's, in whole milliseconds.
    pub fn used(&self, limit: Limit) -> Option<u64> {
        match limit {
            Limit::Fuel => self.fuel_used,
            Limit::Timeout => Some(self.wall_time_ms.round() as u64),
            counted => self.usage.used(counted),
        }
    }
}

/// The result of one invocation and what it cost: `T` is what the hook
/// returned ([`Verdict`] for a processor, its [`Derived`] artifacts for an
/// extension, or either for a tool that runs any plugin).
#[derive(Debug)]
pub struct Invocation<T = HookOutput> {
    /// What the hook returned, or why it did not.
    pub outcome: Result<T, InvokeError>,
    /// What it used.
    pub report: UsageReport,
}

impl<T> Invocation<T> {
    /// The outcome in one word (`ok`, `budget_exceeded`, `crashed`,
    /// `failed`, `invalid_output`, `host_error`): the label of metrics and
    /// the dashboard's counters.
    pub fn outcome_key(&self) -> &'static str {
        match &self.outcome {
            Ok(_) => "ok",
            Err(InvokeError::BudgetExceeded { .. }) => "budget_exceeded",
            Err(InvokeError::Crashed { .. }) => "crashed",
            Err(InvokeError::Failed { .. }) => "failed",
            Err(InvokeError::InvalidOutput { .. }) => "invalid_output",
            Err(InvokeError::Host { .. }) => "host_error",
        }
    }
}

impl HookOutput {
    /// Checks the names and keys of a result already read under the budget;
    /// the error says what is wrong with it.
    pub(super) fn check(&self) -> Result<(), String> {
        let metadata = match self {
            HookOutput::Verdict(
                Verdict::Accept { metadata } | Verdict::Replace { metadata, .. },
            ) => metadata.as_slice(),
            _ => &[],
        };
        if let Some((key, _)) = metadata.iter().find(|(k, _)| !valid_metadata_key(k)) {
            return Err(format!(
                "metadata key {key:?} must match [a-z0-9._-]{{1,64}}"
            ));
        }
        let content_types: Vec<&str> = match self {
            HookOutput::Verdict(Verdict::Replace { content_type, .. }) => vec![content_type],
            HookOutput::Derived(items) => items.iter().map(|d| d.content_type.as_str()).collect(),
            HookOutput::Verdict(_) => Vec::new(),
        };
        if let Some(bad) = content_types.iter().find(|t| !valid_content_type(t)) {
            return Err(format!(
                "content type {bad:?} must be 1 to 255 visible ASCII characters"
            ));
        }
        if let HookOutput::Derived(items) = self {
            let mut names = std::collections::HashSet::new();
            for item in items {
                if !valid_derived_name(&item.name) {
                    return Err(format!(
                        "derived name {:?} must match [a-z0-9._-]{{1,64}} and not start with '.'",
                        item.name
                    ));
                }
                if !names.insert(item.name.as_str()) {
                    return Err(format!("derived name {:?} is used twice", item.name));
                }
            }
        }
        Ok(())
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

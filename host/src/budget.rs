//! Per-plugin budgets set by the operator, and the error raised when one is
//! exceeded.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What one invocation of a plugin may consume. Going over any limit stops the
/// invocation at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Budget {
    /// WebAssembly fuel (roughly, instructions executed).
    pub fuel: u64,
    /// Wall-clock time for the whole invocation, host calls included.
    pub timeout_ms: u64,
    /// Linear memory the instance may grow to, in bytes.
    pub memory_bytes: u64,
    /// Cache operations; a batch counts one per key.
    pub cache_calls: u64,
    /// Bytes (keys + values) written to the cache.
    pub cache_write_bytes: u64,
    /// Content bytes returned by `content.read`.
    pub read_bytes: u64,
    /// Bytes the plugin returns: replacement content, derived artifacts and
    /// metadata.
    pub output_bytes: u64,
    /// Lines written through the `log` interface.
    pub log_lines: u64,
    /// Table elements summed over every table of the invocation.
    pub table_elements: u64,
    /// Metadata entries a processor may return.
    pub metadata_entries: u64,
    /// Derived artifacts an extension may return.
    pub derived_artifacts: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            fuel: 2_000_000_000,
            timeout_ms: 2_000,
            memory_bytes: 128 << 20,
            cache_calls: 64,
            cache_write_bytes: 1 << 20,
            read_bytes: 1 << 30,
            output_bytes: 32 << 20,
            log_lines: 64,
            table_elements: 100_000,
            metadata_entries: 64,
            derived_artifacts: 16,
        }
    }
}

/// What each returned metadata entry or derived artifact costs in
/// `output_bytes` on top of its own bytes: an empty entry is not free, since
/// the host stores and indexes every one.
pub const OUTPUT_ENTRY_COST: u64 = 64;

/// One of the limits in a [`Budget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// [`Budget::fuel`].
    Fuel,
    /// [`Budget::timeout_ms`].
    Timeout,
    /// [`Budget::memory_bytes`].
    Memory,
    /// [`Budget::cache_calls`].
    CacheCalls,
    /// [`Budget::cache_write_bytes`].
    CacheWriteBytes,
    /// [`Budget::read_bytes`].
    ReadBytes,
    /// [`Budget::output_bytes`].
    OutputBytes,
    /// [`Budget::log_lines`].
    LogLines,
    /// [`Budget::table_elements`].
    TableElements,
    /// [`Budget::metadata_entries`].
    MetadataEntries,
    /// [`Budget::derived_artifacts`].
    DerivedArtifacts,
}

impl Limit {
    /// Every limit, in a stable order (for metrics and reports).
    pub const ALL: [Limit; 11] = [
        Limit::Fuel,
        Limit::Timeout,
        Limit::Memory,
        Limit::CacheCalls,
        Limit::CacheWriteBytes,
        Limit::ReadBytes,
        Limit::OutputBytes,
        Limit::LogLines,
        Limit::TableElements,
        Limit::MetadataEntries,
        Limit::DerivedArtifacts,
    ];

    /// The budget key that sets this limit, as written in config files (and,
    /// with `-` for `_`, the `airlock plugin run` flag).
    pub fn key(self) -> &'static str {
        self.spec().key
    }

    /// What the limit bounds, in a few words (the flag's help).
    pub fn description(self) -> &'static str {
        self.spec().description
    }

    /// The allowance for this limit in `budget`.
    pub fn allowed_in(self, budget: &Budget) -> u64 {
        *self.allowance(&mut budget.clone())
    }

    /// The field of `budget` that holds this limit's allowance.
    pub fn allowance(self, budget: &mut Budget) -> &mut u64 {
        (self.spec().field)(budget)
    }

    /// Everything about one limit, in the one table that maps them.
    fn spec(self) -> LimitSpec {
        let (key, description, field): (_, _, fn(&mut Budget) -> &mut u64) = match self {
            Limit::Fuel => ("fuel", "Fuel", |b| &mut b.fuel),
            Limit::Timeout => ("timeout_ms", "Wall-clock limit in milliseconds", |b| {
                &mut b.timeout_ms
            }),
            Limit::Memory => ("memory_bytes", "Linear memory limit in bytes", |b| {
                &mut b.memory_bytes
            }),
            Limit::CacheCalls => ("cache_calls", "Cache operations (one per key)", |b| {
                &mut b.cache_calls
            }),
            Limit::CacheWriteBytes => ("cache_write_bytes", "Cache bytes written", |b| {
                &mut b.cache_write_bytes
            }),
            Limit::ReadBytes => ("read_bytes", "Content bytes read", |b| &mut b.read_bytes),
            Limit::OutputBytes => ("output_bytes", "Bytes returned", |b| &mut b.output_bytes),
            Limit::LogLines => ("log_lines", "Log lines", |b| &mut b.log_lines),
            Limit::TableElements => ("table_elements", "Table elements, over all tables", |b| {
                &mut b.table_elements
            }),
            Limit::MetadataEntries => ("metadata_entries", "Metadata entries returned", |b| {
                &mut b.metadata_entries
            }),
            Limit::DerivedArtifacts => ("derived_artifacts", "Derived artifacts returned", |b| {
                &mut b.derived_artifacts
            }),
        };
        LimitSpec {
            key,
            description,
            field,
        }
    }
}

/// A row of [`Limit::spec`].
struct LimitSpec {
    key: &'static str,
    description: &'static str,
    field: fn(&mut Budget) -> &mut u64,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// The trap a host function raises when an invocation goes over a limit;
/// the runtime turns it into `InvokeError::BudgetExceeded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("exceeded its {limit} budget: used {used}, allowed {allowed}")]
pub struct OverBudget {
    /// The limit that was hit.
    pub limit: Limit,
    /// How much had been used (or was asked for) when it was stopped.
    pub used: u64,
    /// The allowance.
    pub allowed: u64,
}

//! The store data of one invocation: what it has used against its budget,
//! the `content` resource, and the limiter that sums every linear memory
//! and table it holds. The cache and log imports are in `imports`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::component::{Resource, ResourceTable};

use super::content::ContentSource;
use super::imports::Answer;
use super::outcome::{CrashKind, GuestFault, HostFault};
use crate::bindings::{log, types};
use crate::budget::{Budget, Limit, OverBudget};
use crate::cache::{CacheError, PluginCache};

/// Most bytes one `content.read` returns.
const MAX_READ_CHUNK: u32 = 1 << 20;

/// The host object behind a plugin's `content` resource.
pub struct ContentHandle {
    pub(super) source: Arc<dyn ContentSource>,
    /// Its hex SHA-256, when the host has it already.
    pub(super) sha256: Option<String>,
}

/// Cache operations by kind (batches count per key).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CacheOps {
    /// `get` and keys of `get-many`.
    pub get: u64,
    /// `set` and keys of `set-many`.
    pub set: u64,
    /// `add`.
    pub add: u64,
    /// `delete`.
    pub delete: u64,
}

impl CacheOps {
    /// Each kind with its count, named as metrics and the admin API name it.
    pub fn by_kind(&self) -> [(&'static str, u64); 4] {
        [
            ("get", self.get),
            ("set", self.set),
            ("add", self.add),
            ("delete", self.delete),
        ]
    }
}

/// What an invocation has used so far.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    /// Cache operations, one per key asked for (refused ones included).
    pub cache_calls: u64,
    /// The same, by kind.
    pub cache_ops: CacheOps,
    /// Cache bytes written (keys + values).
    pub cache_write_bytes: u64,
    /// Content bytes read.
    pub read_bytes: u64,
    /// Bytes returned by the plugin, with a fixed cost per entry.
    pub output_bytes: u64,
    /// Log lines written.
    pub log_lines: u64,
    /// Most linear memory held at once, summed over every memory of every
    /// core instance, in bytes.
    pub peak_memory_bytes: u64,
    /// Most table elements held at once, summed over every table.
    pub table_elements: u64,
    /// Metadata entries returned.
    pub metadata_entries: u64,
    /// Derived artifacts returned.
    pub derived_artifacts: u64,
}

impl Usage {
    /// The counter of what was used against `limit`: a running total, or
    /// for memory and tables the peak held at once. `None` for fuel and
    /// time, which the store and the clock measure.
    pub fn counter(&mut self, limit: Limit) -> Option<&mut u64> {
        Some(match limit {
            Limit::Fuel | Limit::Timeout => return None,
            Limit::Memory => &mut self.peak_memory_bytes,
            Limit::CacheCalls => &mut self.cache_calls,
            Limit::CacheWriteBytes => &mut self.cache_write_bytes,
            Limit::ReadBytes => &mut self.read_bytes,
            Limit::OutputBytes => &mut self.output_bytes,
            Limit::LogLines => &mut self.log_lines,
            Limit::TableElements => &mut self.table_elements,
            Limit::MetadataEntries => &mut self.metadata_entries,
            Limit::DerivedArtifacts => &mut self.derived_artifacts,
        })
    }

    /// What was used against `limit`, as [`Usage::counter`] counts it.
    pub fn used(&self, limit: Limit) -> Option<u64> {
        let mut usage = *self;
        usage.counter(limit).copied()
    }
}

/// Per-invocation store data.
pub struct HostState {
    pub(super) plugin: Arc<str>,
    pub(super) upload_id: String,
    pub(super) budget: Budget,
    pub(super) deadline: Instant,
    pub(super) cache: PluginCache,
    pub(super) table: ResourceTable,
    pub(super) usage: Usage,
    /// Linear memory held now, over every memory of the invocation.
    memory_bytes: u64,
    /// Table elements held now, over every table of the invocation.
    table_elements: u64,
    /// Set when a host call or the limiter stopped the plugin, so the trap
    /// can be reported as the limit it was.
    pub(super) over_budget: Option<OverBudget>,
    /// The last error-level line the plugin logged: the SDK's panic hook
    /// writes the panic message there just before the `unreachable` trap.
    pub(super) last_error_line: Option<String>,
}

type Trappable<T> = wasmtime::Result<T>;

impl HostState {
    pub(super) fn new(
        plugin: Arc<str>,
        upload_id: String,
        budget: Budget,
        cache: PluginCache,
        started: Instant,
    ) -> Self {
        Self {
            plugin,
            upload_id,
            budget,
            deadline: started + Duration::from_millis(budget.timeout_ms),
            cache,
            table: ResourceTable::new(),
            usage: Usage::default(),
            memory_bytes: 0,
            table_elements: 0,
            over_budget: None,
            last_error_line: None,
        }
    }

    /// Records `limit` as exceeded and returns the trap that stops the plugin.
    fn stop(&mut self, limit: Limit, used: u64) -> wasmtime::Error {
        let over = OverBudget {
            limit,
            used,
            allowed: limit.allowed_in(&self.budget),
        };
        self.over_budget.get_or_insert(over);
        wasmtime::Error::new(over)
    }

    /// Adds `amount` to the counter of a limit the host counts, trapping if
    /// that passes its limit.
    pub(super) fn charge(&mut self, limit: Limit, amount: u64) -> Trappable<()> {
        let counter = match limit {
            // Measured by the store and the clock, or summed by the limiter.
            Limit::Fuel | Limit::Timeout | Limit::Memory | Limit::TableElements => None,
            counted => self.usage.counter(counted),
        };
        let Some(counter) = counter else {
            return Ok(());
        };
        let used = counter.saturating_add(amount);
        *counter = used;
        if used > limit.allowed_in(&self.budget) {
            return Err(self.stop(limit, used));
        }
        Ok(())
    }

    /// Charges `keys` cache calls of one kind; a refused call is charged too.
    pub(super) fn charge_calls(
        &mut self,
        kind: fn(&mut CacheOps) -> &mut u64,
        keys: usize,
    ) -> Trappable<()> {
        let keys = keys as u64;
        let counter = kind(&mut self.usage.cache_ops);
        *counter = counter.saturating_add(keys);
        self.charge(Limit::CacheCalls, keys)
    }

    /// Turns a cache result into the guest's answer; a backend that answered
    /// only after the deadline is a timeout.
    pub(super) fn settle<T>(&mut self, result: Result<T, CacheError>) -> Trappable<Answer<T>> {
        if matches!(result, Err(CacheError::Unavailable)) {
            self.time_left()?;
        }
        Ok((result.map_err(Into::into),))
    }

    /// Time left before the invocation's deadline; traps once it has passed,
    /// since fuel and epochs do not tick while the host awaits.
    pub(super) fn time_left(&mut self) -> Trappable<Duration> {
        let now = Instant::now();
        match self.deadline.checked_duration_since(now) {
            Some(left) if !left.is_zero() => Ok(left),
            _ => {
                let late = now.duration_since(self.deadline).as_millis();
                let elapsed = self
                    .budget
                    .timeout_ms
                    .saturating_add(u64::try_from(late).unwrap_or(u64::MAX));
                Err(self.stop(Limit::Timeout, elapsed))
            }
        }
    }

    /// Writes one (already escaped) plugin log line; the plugin's text is a
    /// field, never part of the format string.
    pub(super) fn log(&mut self, level: log::Level, line: String) {
        let (plugin, upload) = (&*self.plugin, self.upload_id.as_str());
        match level {
            log::Level::Trace => tracing::trace!(plugin, upload, message = %line),
            log::Level::Debug => tracing::debug!(plugin, upload, message = %line),
            log::Level::Info => tracing::info!(plugin, upload, message = %line),
            log::Level::Warn => tracing::warn!(plugin, upload, message = %line),
            log::Level::Error => {
                tracing::error!(plugin, upload, message = %line);
                self.last_error_line = Some(line);
            }
        }
    }
}

impl types::Host for HostState {}

impl HostState {
    /// The content behind a handle the guest passed.
    fn content(&self, handle: &Resource<ContentHandle>) -> Trappable<&ContentHandle> {
        self.table
            .get(handle)
            .map_err(|e| GuestFault::new(CrashKind::BadHandle, e.to_string()).into())
    }
}

impl types::HostContent for HostState {
    async fn size(&mut self, content: Resource<ContentHandle>) -> Trappable<u64> {
        Ok(self.content(&content)?.source.size())
    }

    async fn read(
        &mut self,
        content: Resource<ContentHandle>,
        offset: u64,
        len: u32,
    ) -> Trappable<Vec<u8>> {
        let source = Arc::clone(&self.content(&content)?.source);
        let len = len.min(MAX_READ_CHUNK) as usize;
        let available = source.size().saturating_sub(offset);
        self.charge(Limit::ReadBytes, available.min(len as u64))?;
        let left = self.time_left()?;
        match tokio::time::timeout(left, source.read_at(offset, len)).await {
            Ok(Ok(bytes)) => Ok(Bytes::into(bytes)),
            Ok(Err(err)) => Err(HostFault::caused_by("reading content", err).into()),
            Err(_) => {
                self.time_left()?;
                Err(HostFault::new("reading content timed out").into())
            }
        }
    }

    async fn sha256(&mut self, content: Resource<ContentHandle>) -> Trappable<String> {
        let handle = self.content(&content)?;
        if let Some(digest) = &handle.sha256 {
            return Ok(digest.clone());
        }
        // Every pipeline path passes the digest it computed as the bytes
        // arrived; a caller that did not (a tool) gets it computed here, by
        // the host, within the invocation's time.
        let source = Arc::clone(&handle.source);
        let left = self.time_left()?;
        let digest = match tokio::time::timeout(left, digest_of(source.as_ref())).await {
            Ok(Ok(digest)) => digest,
            Ok(Err(err)) => return Err(HostFault::caused_by("hashing content", err).into()),
            Err(_) => {
                self.time_left()?;
                return Err(HostFault::new("hashing content timed out").into());
            }
        };
        if let Ok(handle) = self.table.get_mut(&content) {
            handle.sha256 = Some(digest.clone());
        }
        Ok(digest)
    }

    async fn drop(&mut self, content: Resource<ContentHandle>) -> Trappable<()> {
        self.table
            .delete(content)
            .map_err(|e| GuestFault::new(CrashKind::BadHandle, e.to_string()))?;
        Ok(())
    }
}

/// The hex SHA-256 of all of `source`, read in 1 MiB chunks.
async fn digest_of(source: &dyn ContentSource) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut offset = 0;
    while offset < source.size() {
        let chunk = source.read_at(offset, MAX_READ_CHUNK as usize).await?;
        if chunk.is_empty() {
            break;
        }
        offset += chunk.len() as u64;
        hasher.update(&chunk);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Sums every linear memory and table of the invocation against its budget
/// and records the peaks. Going over traps at once rather than failing the
/// grow, which a plugin could ignore.
impl wasmtime::ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Called with `current == 0` when a memory is created, so the sum
        // covers every memory of every core instance.
        let total =
            (self.memory_bytes.saturating_add(desired as u64)).saturating_sub(current as u64);
        if total > self.budget.memory_bytes {
            return Err(self.stop(Limit::Memory, total));
        }
        self.memory_bytes = total;
        self.usage.peak_memory_bytes = self.usage.peak_memory_bytes.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total =
            (self.table_elements.saturating_add(desired as u64)).saturating_sub(current as u64);
        if total > self.budget.table_elements {
            return Err(self.stop(Limit::TableElements, total));
        }
        self.table_elements = total;
        self.usage.table_elements = self.usage.table_elements.max(total);
        Ok(true)
    }
}

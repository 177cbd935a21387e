//! The store data of one invocation and the host side of the WIT imports:
//! every call a plugin makes is counted against its budget here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::component::{Resource, ResourceTable};

use super::content::ContentSource;
use crate::bindings::{cache, log, types};
use crate::budget::{Budget, Limit, OverBudget};
use crate::cache::{CacheError, MAX_BATCH, PluginCache, PutMode};

/// Most bytes one `content.read` returns.
const MAX_READ_CHUNK: u32 = 1 << 20;
/// Log lines longer than this are cut.
const MAX_LOG_LINE: usize = 4 << 10;

/// The host object behind a plugin's `content` resource.
pub struct ContentHandle {
    pub(super) source: Arc<dyn ContentSource>,
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

/// What an invocation has used so far.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    /// Cache operations, one per key.
    pub cache_calls: u64,
    /// The same, by kind.
    pub cache_ops: CacheOps,
    /// Cache bytes written (keys + values).
    pub cache_write_bytes: u64,
    /// Content bytes read.
    pub read_bytes: u64,
    /// Bytes returned by the plugin.
    pub output_bytes: u64,
    /// Log lines written.
    pub log_lines: u64,
    /// Largest linear memory reached, in bytes.
    pub peak_memory_bytes: u64,
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

    /// Adds `amount` to a counter, trapping if that passes its limit.
    fn charge(&mut self, limit: Limit, amount: u64) -> Trappable<()> {
        let counter = match limit {
            Limit::CacheCalls => &mut self.usage.cache_calls,
            Limit::CacheWriteBytes => &mut self.usage.cache_write_bytes,
            Limit::ReadBytes => &mut self.usage.read_bytes,
            Limit::OutputBytes => &mut self.usage.output_bytes,
            Limit::LogLines => &mut self.usage.log_lines,
            Limit::Fuel | Limit::Timeout | Limit::Memory => return Ok(()),
        };
        let used = counter.saturating_add(amount);
        *counter = used;
        if used > limit.allowed_in(&self.budget) {
            return Err(self.stop(limit, used));
        }
        Ok(())
    }

    /// Time left before the invocation's deadline; traps once it has passed,
    /// since fuel and epochs do not tick while the host awaits.
    fn time_left(&mut self) -> Trappable<Duration> {
        let now = Instant::now();
        match self.deadline.checked_duration_since(now) {
            Some(left) if !left.is_zero() => Ok(left),
            _ => {
                let elapsed = self.budget.timeout_ms
                    + u64::try_from(now.duration_since(self.deadline).as_millis()).unwrap_or(0);
                Err(self.stop(Limit::Timeout, elapsed))
            }
        }
    }

    /// Runs a cache call after charging `keys` calls and `written` bytes;
    /// a backend that answers only after the deadline is a timeout.
    async fn cache_call<T>(
        &mut self,
        op_kind: fn(&mut CacheOps) -> &mut u64,
        keys: usize,
        written: u64,
        op: impl AsyncFnOnce(&PluginCache, Duration) -> Result<T, CacheError>,
    ) -> Trappable<Result<T, cache::Error>> {
        *op_kind(&mut self.usage.cache_ops) += keys as u64;
        self.charge(Limit::CacheCalls, keys as u64)?;
        self.charge(Limit::CacheWriteBytes, written)?;
        let left = self.time_left()?;
        let result = op(&self.cache, left).await;
        if matches!(result, Err(CacheError::Unavailable)) {
            self.time_left()?;
        }
        Ok(result.map_err(Into::into))
    }

    fn batch_len(len: usize) -> Result<(), cache::Error> {
        if len > MAX_BATCH {
            Err(cache::Error::TooLarge)
        } else {
            Ok(())
        }
    }
}

impl From<CacheError> for cache::Error {
    fn from(err: CacheError) -> Self {
        match err {
            CacheError::QuotaExceeded => cache::Error::QuotaExceeded,
            CacheError::TooLarge => cache::Error::TooLarge,
            CacheError::InvalidKey => cache::Error::InvalidKey,
            CacheError::Unavailable => cache::Error::Unavailable,
        }
    }
}

fn written(key: &str, value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

impl cache::Host for HostState {
    async fn get(&mut self, key: String) -> Trappable<Result<Option<Vec<u8>>, cache::Error>> {
        self.cache_call(
            |o| &mut o.get,
            1,
            0,
            async |cache, left| cache.get(&key, left).await.map(|v| v.map(Vec::from)),
        )
        .await
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_seconds: u32,
    ) -> Trappable<Result<(), cache::Error>> {
        let bytes = written(&key, &value);
        self.cache_call(
            |o| &mut o.set,
            1,
            bytes,
            async |cache, left| {
                cache
                    .put(&key, value.into(), ttl_seconds, PutMode::Overwrite, left)
                    .await
                    .map(drop)
            },
        )
        .await
    }

    async fn add(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_seconds: u32,
    ) -> Trappable<Result<bool, cache::Error>> {
        let bytes = written(&key, &value);
        self.cache_call(
            |o| &mut o.add,
            1,
            bytes,
            async |cache, left| {
                cache
                    .put(&key, value.into(), ttl_seconds, PutMode::IfAbsent, left)
                    .await
            },
        )
        .await
    }

    async fn delete(&mut self, key: String) -> Trappable<Result<bool, cache::Error>> {
        self.cache_call(
            |o| &mut o.delete,
            1,
            0,
            async |cache, left| cache.delete(&key, left).await,
        )
        .await
    }

    async fn get_many(
        &mut self,
        keys: Vec<String>,
    ) -> Trappable<Result<Vec<Option<Vec<u8>>>, cache::Error>> {
        if let Err(e) = Self::batch_len(keys.len()) {
            return Ok(Err(e));
        }
        self.cache_call(
            |o| &mut o.get,
            keys.len(),
            0,
            async |cache, left| {
                let deadline = Instant::now() + left;
                let mut values = Vec::with_capacity(keys.len());
                for key in &keys {
                    let left = deadline.saturating_duration_since(Instant::now());
                    values.push(cache.get(key, left).await?.map(Vec::from));
                }
                Ok(values)
            },
        )
        .await
    }

    async fn set_many(
        &mut self,
        entries: Vec<(String, Vec<u8>)>,
        ttl_seconds: u32,
    ) -> Trappable<Result<(), cache::Error>> {
        if let Err(e) = Self::batch_len(entries.len()) {
            return Ok(Err(e));
        }
        let bytes = entries.iter().map(|(k, v)| written(k, v)).sum();
        self.cache_call(
            |o| &mut o.set,
            entries.len(),
            bytes,
            async |cache, left| {
                let deadline = Instant::now() + left;
                for (key, value) in entries {
                    let left = deadline.saturating_duration_since(Instant::now());
                    cache
                        .put(&key, value.into(), ttl_seconds, PutMode::Overwrite, left)
                        .await?;
                }
                Ok(())
            },
        )
        .await
    }
}

impl log::Host for HostState {
    async fn write(&mut self, level: log::Level, mut message: String) -> Trappable<()> {
        self.charge(Limit::LogLines, 1)?;
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let (plugin, upload) = (&*self.plugin, self.upload_id.as_str());
        match level {
            log::Level::Trace => tracing::trace!(plugin, upload, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, upload, "{message}"),
            log::Level::Info => tracing::info!(plugin, upload, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, upload, "{message}"),
            log::Level::Error => {
                tracing::error!(plugin, upload, "{message}");
                self.last_error_line = Some(message);
            }
        }
        Ok(())
    }
}

impl types::Host for HostState {}

impl types::HostContent for HostState {
    async fn size(&mut self, content: Resource<ContentHandle>) -> Trappable<u64> {
        Ok(self.table.get(&content)?.source.size())
    }

    async fn read(
        &mut self,
        content: Resource<ContentHandle>,
        offset: u64,
        len: u32,
    ) -> Trappable<Vec<u8>> {
        let source = Arc::clone(&self.table.get(&content)?.source);
        let len = len.min(MAX_READ_CHUNK) as usize;
        let available = source.size().saturating_sub(offset);
        self.charge(Limit::ReadBytes, available.min(len as u64))?;
        let left = self.time_left()?;
        match tokio::time::timeout(left, source.read_at(offset, len)).await {
            Ok(Ok(bytes)) => Ok(Bytes::into(bytes)),
            Ok(Err(err)) => Err(wasmtime::Error::msg(format!("reading content: {err}"))),
            Err(_) => {
                self.time_left()?;
                Err(wasmtime::Error::msg("reading content timed out"))
            }
        }
    }

    async fn drop(&mut self, content: Resource<ContentHandle>) -> Trappable<()> {
        self.table.delete(content)?;
        Ok(())
    }
}

/// Caps linear memory at the budget and records the peak. Going over traps
/// at once rather than failing the `memory.grow`, which a plugin could ignore.
impl wasmtime::ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let desired = desired as u64;
        if desired > self.budget.memory_bytes {
            return Err(self.stop(Limit::Memory, desired));
        }
        self.usage.peak_memory_bytes = self.usage.peak_memory_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

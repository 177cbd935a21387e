//! The cache capability: the only shared state a plugin can reach.
//!
//! [`CacheBackend`] is the small seam a storage engine implements (in-memory,
//! Redis). [`PluginCache`] sits above it and is what a plugin actually gets:
//! keys namespaced per plugin, validated, TTLs capped, values bounded, and
//! the plugin's stored keys and bytes held to its quota. Every backend gets
//! those rules for free because they live here, not in the backends.

mod memory;
mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use self::memory::MemoryBackend;
pub use self::redis::RedisBackend;

/// Longest key a plugin may use, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Most keys one batched operation may touch.
pub const MAX_BATCH: usize = 64;

/// How many keys and bytes (keys + values) one plugin may keep stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quota {
    /// Live keys.
    pub max_keys: u64,
    /// Live bytes, keys and values together.
    pub max_bytes: u64,
}

impl Default for Quota {
    fn default() -> Self {
        Self {
            max_keys: 10_000,
            max_bytes: 64 << 20,
        }
    }
}

/// Operator-set rules for one plugin's cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CachePolicy {
    /// Stored keys and bytes.
    #[serde(flatten)]
    pub quota: Quota,
    /// Largest value accepted, in bytes.
    pub max_value_bytes: u64,
    /// Longest TTL; 0 or larger TTLs asked by the plugin become this.
    pub max_ttl_seconds: u32,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            quota: Quota::default(),
            max_value_bytes: 1 << 20,
            max_ttl_seconds: 86_400,
        }
    }
}

/// Whether a put overwrites an existing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Store whatever is there.
    Overwrite,
    /// Store only if the key is absent (`add`).
    IfAbsent,
}

/// What a backend did with a put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The value is stored.
    Stored,
    /// `IfAbsent` and the key was present: nothing changed.
    Present,
    /// Storing it would take the namespace past its quota: nothing changed.
    OverQuota,
}

/// A backend failed or did not answer. The message says what was being
/// done; an underlying error is the `source`, not part of the message, so
/// that a report of the whole chain shows it once.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A call to the backend failed.
    #[error("cache backend unavailable: {what}")]
    Failed {
        /// What failed (`redis: GET`).
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No underlying error says why (the backend did not answer in time).
    #[error("cache backend unavailable: {0}")]
    Unavailable(String),
}

impl BackendError {
    /// A call doing `what` failed because of `source`.
    pub fn failed(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Failed {
            what: what.into(),
            source: Box::new(source),
        }
    }
}

/// One write to a [`CacheBackend`].
#[derive(Debug, Clone)]
pub struct Put<'a> {
    /// The namespace the key is counted in.
    pub namespace: &'a str,
    /// The full key.
    pub key: &'a str,
    /// The value.
    pub value: Bytes,
    /// How long it lives.
    pub ttl: Duration,
    /// Overwrite, or only if absent.
    pub mode: PutMode,
    /// The namespace's quota, checked with the write.
    pub quota: Quota,
}

/// A key-value store that keeps per-namespace usage so quotas can be checked
/// atomically with the write.
///
/// Implementations must make every operation cost O(1) (or O(log n)) in the
/// number of stored keys: there is no scan and no flush, by design.
#[async_trait]
pub trait CacheBackend: Send + Sync + 'static {
    /// Short name for logs and readiness (`memory`, `redis`).
    fn kind(&self) -> &'static str;
    /// Reads one full key.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, BackendError>;
    /// Writes one full key of a namespace, unless that would take the
    /// namespace past its quota.
    async fn put(&self, put: Put<'_>) -> Result<PutOutcome, BackendError>;
    /// Removes one full key of `namespace`; true if it was present.
    async fn delete(&self, namespace: &str, key: &str) -> Result<bool, BackendError>;
    /// Checks the backend answers (for readiness probes).
    async fn ping(&self) -> Result<(), BackendError>;
}

/// Why a plugin's cache operation did not happen; mirrors the WIT `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// Over the plugin's key or byte quota.
    #[error("quota exceeded")]
    QuotaExceeded,
    /// Value or batch too large.
    #[error("too large")]
    TooLarge,
    /// Empty, too long or malformed key.
    #[error("invalid key")]
    InvalidKey,
    /// Backend down or too slow.
    #[error("unavailable")]
    Unavailable,
}

/// One plugin's view of the shared cache.
#[derive(Clone)]
pub struct PluginCache {
    backend: Arc<dyn CacheBackend>,
    namespace: Arc<str>,
    policy: CachePolicy,
    op_timeout: Duration,
}

impl PluginCache {
    /// The cache of plugin `plugin`, with keys stored as
    /// `<prefix>:<plugin>:<key>`.
    pub fn new(
        backend: Arc<dyn CacheBackend>,
        prefix: &str,
        plugin: &str,
        policy: CachePolicy,
        op_timeout: Duration,
    ) -> Self {
        Self {
            backend,
            namespace: format!("{prefix}:{plugin}").into(),
            policy,
            op_timeout,
        }
    }

    /// Checks a plugin key and returns its full backend key.
    pub fn full_key(&self, key: &str) -> Result<String, CacheError> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES || key.chars().any(char::is_control) {
            return Err(CacheError::InvalidKey);
        }
        Ok(format!("{}:{key}", self.namespace))
    }

    /// The largest value this plugin may store.
    pub fn max_value_bytes(&self) -> u64 {
        self.policy.max_value_bytes
    }

    /// Checks a value against the size cap.
    fn check_value(&self, value: &[u8]) -> Result<(), CacheError> {
        if value.len() as u64 > self.policy.max_value_bytes {
            return Err(CacheError::TooLarge);
        }
        Ok(())
    }

    /// The TTL actually applied for a requested one.
    pub fn effective_ttl(&self, ttl_seconds: u32) -> Duration {
        let max = self.policy.max_ttl_seconds.max(1);
        let ttl = if ttl_seconds == 0 {
            max
        } else {
            ttl_seconds.min(max)
        };
        Duration::from_secs(u64::from(ttl))
    }

    /// Reads `key`.
    pub async fn get(&self, key: &str, within: Duration) -> Result<Option<Bytes>, CacheError> {
        let full = self.full_key(key)?;
        self.bounded(within, self.backend.get(&full)).await
    }

    /// Writes `key`; with [`PutMode::IfAbsent`] returns whether it was stored.
    pub async fn put(
        &self,
        key: &str,
        value: Bytes,
        ttl_seconds: u32,
        mode: PutMode,
        within: Duration,
    ) -> Result<bool, CacheError> {
        let full = self.full_key(key)?;
        self.check_value(&value)?;
        let ttl = self.effective_ttl(ttl_seconds);
        let outcome = self
            .bounded(
                within,
                self.backend.put(Put {
                    namespace: &self.namespace,
                    key: &full,
                    value,
                    ttl,
                    mode,
                    quota: self.policy.quota,
                }),
            )
            .await?;
        match outcome {
            PutOutcome::Stored => Ok(true),
            PutOutcome::Present => Ok(false),
            PutOutcome::OverQuota => Err(CacheError::QuotaExceeded),
        }
    }

    /// Removes `key`; true if it was present.
    pub async fn delete(&self, key: &str, within: Duration) -> Result<bool, CacheError> {
        let full = self.full_key(key)?;
        self.bounded(within, self.backend.delete(&self.namespace, &full))
            .await
    }

    /// Runs one backend call under the shorter of the backend timeout and
    /// `within` (what is left of the invocation), so a slow backend can never
    /// hold a plugin, or an upload, past its deadline.
    async fn bounded<T>(
        &self,
        within: Duration,
        op: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, CacheError> {
        match tokio::time::timeout(self.op_timeout.min(within), op).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                tracing::warn!(namespace = %self.namespace, error = %crate::text::chain(&err), "cache backend failed");
                Err(CacheError::Unavailable)
            }
            Err(_) => {
                tracing::warn!(namespace = %self.namespace, "cache backend timed out");
                Err(CacheError::Unavailable)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[tokio::test]
    async fn a_redis_failure_is_the_source_not_part_of_the_message() {
        let Err(err) = RedisBackend::connect("not a url", Duration::from_secs(1)).await else {
            panic!("connected to a malformed URL");
        };
        assert_eq!(
            err.to_string(),
            "cache backend unavailable: opening not a url"
        );
        let Some(cause) = err
            .source()
            .and_then(|s| s.downcast_ref::<::redis::RedisError>())
        else {
            panic!("no RedisError source: {err:?}");
        };
        let cause = cause.to_string();
        let chain = crate::text::chain(&err);
        assert_eq!(chain.matches(&cause).count(), 1, "{chain}");
    }
}

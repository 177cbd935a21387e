//! In-process cache backend (the embedded default), built on `moka`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use moka::Expiry;
use moka::future::Cache;

use super::{BackendError, CacheBackend, Put, PutMode, PutOutcome, Quota};

#[derive(Clone)]
struct Entry {
    value: Bytes,
    namespace: Arc<str>,
    ttl: Duration,
}

impl Entry {
    fn weight(&self, key: &str) -> u64 {
        (key.len() + self.value.len()) as u64
    }
}

struct PerEntryTtl;

impl Expiry<Arc<str>, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _: &Arc<str>, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _: &Arc<str>,
        entry: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

#[derive(Default, Clone, Copy)]
struct Usage {
    keys: u64,
    bytes: u64,
}

type UsageMap = Arc<Mutex<HashMap<Arc<str>, Usage>>>;

/// A bounded in-memory cache shared by every plugin of this process.
///
/// Usage per namespace is counted on insert and un-counted by moka's eviction
/// listener (expiry, size eviction, replacement, delete), so quota checks
/// never scan.
pub struct MemoryBackend {
    entries: Cache<Arc<str>, Entry>,
    usage: UsageMap,
    // Serialises writes so the quota check and the insert are one step.
    write_lock: tokio::sync::Mutex<()>,
}

impl MemoryBackend {
    /// A cache holding at most `capacity_bytes` of keys and values in all.
    pub fn new(capacity_bytes: u64) -> Self {
        let usage: UsageMap = Arc::default();
        let listener_usage = Arc::clone(&usage);
        let entries = Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|key: &Arc<str>, entry: &Entry| {
                u32::try_from(entry.weight(key)).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .eviction_listener(move |key: Arc<Arc<str>>, entry: Entry, _cause| {
                let mut usage = listener_usage
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if let Some(ns) = usage.get_mut(&entry.namespace) {
                    ns.keys = ns.keys.saturating_sub(1);
                    ns.bytes = ns.bytes.saturating_sub(entry.weight(&key));
                }
            })
            .build();
        Self {
            entries,
            usage,
            write_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn usage_of(&self, namespace: &str) -> Usage {
        self.usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace)
            .copied()
            .unwrap_or_default()
    }
}

/// Whether writing `new_weight` bytes over an entry of `old` weight (None if
/// absent) keeps `usage` within `quota`. Shrinking or same-size overwrites are
/// always allowed so a plugin at its quota can still update its keys.
fn within_quota(usage: (u64, u64), old: Option<u64>, new_weight: u64, quota: Quota) -> bool {
    let (keys, bytes) = usage;
    let keys_after = keys + u64::from(old.is_none());
    let bytes_after = (bytes + new_weight).saturating_sub(old.unwrap_or(0));
    let grows_keys = old.is_none();
    let grows_bytes = new_weight > old.unwrap_or(0);
    !(grows_keys && keys_after > quota.max_keys || grows_bytes && bytes_after > quota.max_bytes)
}

#[async_trait]
impl CacheBackend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, BackendError> {
        Ok(self.entries.get(key).await.map(|entry| entry.value))
    }

    async fn put(&self, put: Put<'_>) -> Result<PutOutcome, BackendError> {
        let _guard = self.write_lock.lock().await;
        let key: Arc<str> = put.key.into();
        let old = self.entries.get(&key).await.map(|e| e.weight(&key));
        if put.mode == PutMode::IfAbsent && old.is_some() {
            return Ok(PutOutcome::Present);
        }
        let entry = Entry {
            value: put.value,
            namespace: put.namespace.into(),
            ttl: put.ttl,
        };
        let weight = entry.weight(&key);
        let fits = |usage: Usage| within_quota((usage.keys, usage.bytes), old, weight, put.quota);
        if !fits(self.usage_of(put.namespace)) {
            // Expired entries are un-counted lazily; settle them before refusing.
            self.entries.run_pending_tasks().await;
            if !fits(self.usage_of(put.namespace)) {
                return Ok(PutOutcome::OverQuota);
            }
        }
        {
            let mut usage = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
            let ns = usage.entry(entry.namespace.clone()).or_default();
            ns.keys += 1;
            ns.bytes += weight;
        }
        // The listener un-counts the entry this replaces, if any.
        self.entries.insert(key, entry).await;
        Ok(PutOutcome::Stored)
    }

    async fn delete(&self, _namespace: &str, key: &str) -> Result<bool, BackendError> {
        let _guard = self.write_lock.lock().await;
        Ok(self.entries.remove(key).await.is_some())
    }

    async fn ping(&self) -> Result<(), BackendError> {
        Ok(())
    }
}

//! The shared state of plugins: whether each is active, quarantined or
//! disabled, kept in the cache backend so that every node sees it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::cache::{BackendError, CacheBackend, Put, PutMode, Quota};

/// How long a state read or write may take before the node keeps its view.
const STATE_TIMEOUT: Duration = Duration::from_millis(200);
/// How long a quarantine record is kept if nobody re-enables the plugin.
const STATE_TTL: Duration = Duration::from_secs(30 * 86_400);

/// Whether a plugin is invoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginState {
    /// Invoked normally.
    Active,
    /// Stopped by its circuit breaker until an operator re-enables it.
    Quarantined,
    /// Stopped by an operator.
    Disabled,
}

/// The shared record of a plugin that is not active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRecord {
    /// Quarantined or disabled.
    pub state: PluginState,
    /// Seconds since the Unix epoch.
    pub since: u64,
    /// Why.
    pub reason: String,
}

/// Plugin states shared through the cache backend, under a namespace no
/// plugin can name (`<prefix>!control`).
pub struct StateStore {
    backend: Arc<dyn CacheBackend>,
    namespace: String,
}

impl StateStore {
    /// States under `prefix` on `backend`.
    pub fn new(backend: Arc<dyn CacheBackend>, prefix: &str) -> Self {
        Self {
            backend,
            namespace: format!("{prefix}!control"),
        }
    }

    fn key(&self, plugin: &str) -> String {
        format!("{}:{plugin}", self.namespace)
    }

    /// The shared record of `plugin`; `None` means active.
    pub async fn get(&self, plugin: &str) -> Result<Option<StateRecord>, BackendError> {
        let bytes = within(self.backend.get(&self.key(plugin))).await?;
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Publishes `record` for `plugin`.
    pub async fn set(&self, plugin: &str, record: &StateRecord) -> Result<(), BackendError> {
        let json = serde_json::to_vec(record)
            .map_err(|e| BackendError::failed("encoding a plugin state", e))?;
        let quota = Quota {
            max_keys: u64::MAX,
            max_bytes: u64::MAX,
        };
        within(self.backend.put(Put {
            namespace: &self.namespace,
            key: &self.key(plugin),
            value: Bytes::from(json),
            ttl: STATE_TTL,
            mode: PutMode::Overwrite,
            quota,
        }))
        .await
        .map(drop)
    }

    /// Makes `plugin` active again.
    pub async fn clear(&self, plugin: &str) -> Result<(), BackendError> {
        within(self.backend.delete(&self.namespace, &self.key(plugin)))
            .await
            .map(drop)
    }
}

async fn within<T>(op: impl Future<Output = Result<T, BackendError>>) -> Result<T, BackendError> {
    tokio::time::timeout(STATE_TIMEOUT, op)
        .await
        .map_err(|_| BackendError::Unavailable("no answer in time".into()))?
}

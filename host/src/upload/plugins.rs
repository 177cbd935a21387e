//! The plugins of an upload's hooks, and running one of them under its
//! guard.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{SkippedPlugin, UploadError, UploadService};
use crate::budget::Limit;
use crate::runtime::{Invocation, InvokeError, Plugin};
use crate::supervisor::{Guard, Refusal};

/// What happens to an upload when a plugin fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// Skip the plugin; the upload goes on and its record says why.
    #[default]
    FailOpen,
    /// Refuse the upload (503 naming the plugin).
    FailClosed,
}

/// A plugin placed on a hook with its failure policy and containment.
pub struct HookedPlugin {
    /// The loaded plugin.
    pub plugin: Plugin,
    /// What its failures do to an upload.
    pub on_failure: FailurePolicy,
    /// Its bulkhead and circuit breaker.
    pub guard: Guard,
}

/// Why a plugin gave no result on an upload.
pub(super) enum PluginFailure {
    Refused(Refusal),
    Invoke(InvokeError),
}

impl PluginFailure {
    pub(super) fn reason(&self) -> String {
        match self {
            PluginFailure::Refused(r) => r.to_string(),
            PluginFailure::Invoke(e) => e.to_string(),
        }
    }

    pub(super) fn limit(&self) -> Option<Limit> {
        match self {
            PluginFailure::Refused(_) => None,
            PluginFailure::Invoke(e) => e.limit(),
        }
    }
}

/// The plugins of both hooks, each list in run order.
#[derive(Default)]
pub struct PluginSet {
    /// Pre-store processors.
    pub processors: Vec<Arc<HookedPlugin>>,
    /// Post-store extensions.
    pub extensions: Vec<Arc<HookedPlugin>>,
}

impl PluginSet {
    /// Every plugin, processors first.
    pub fn all(&self) -> impl Iterator<Item = &Arc<HookedPlugin>> {
        self.processors.iter().chain(&self.extensions)
    }

    /// The plugin named `name`.
    pub fn find(&self, name: &str) -> Option<&Arc<HookedPlugin>> {
        self.all().find(|h| h.plugin.name() == name)
    }
}

impl UploadService {
    /// Runs `call` on one plugin through its guard (waiting for a slot
    /// until `until`) and records the outcome.
    pub(super) async fn run_plugin<T>(
        &self,
        hooked: &HookedPlugin,
        until: tokio::time::Instant,
        call: impl AsyncFnOnce(&Plugin) -> Invocation<T>,
    ) -> Result<T, PluginFailure> {
        let _slot = hooked
            .guard
            .admit(until)
            .await
            .map_err(PluginFailure::Refused)?;
        let invocation = call(&hooked.plugin).await;
        self.metrics.invocation(hooked.plugin.name(), &invocation);
        hooked.guard.record(&invocation).await;
        invocation.outcome.map_err(PluginFailure::Invoke)
    }

    pub(super) fn on_plugin_failure(
        &self,
        hooked: &HookedPlugin,
        failure: PluginFailure,
        skipped: &mut Vec<SkippedPlugin>,
    ) -> Result<(), UploadError> {
        let plugin = hooked.plugin.name().to_string();
        let reason = failure.reason();
        if let PluginFailure::Refused(Refusal::Busy { waited_ms, .. }) = failure {
            // Load, not the plugin: never a reason to skip it (a privacy
            // step skipped under a burst is a leak). The client retries.
            return Err(UploadError::PluginBusy {
                plugin,
                waited_seconds: waited_ms / 1000,
            });
        }
        match hooked.on_failure {
            FailurePolicy::FailClosed => Err(UploadError::PluginFailed { plugin, reason }),
            FailurePolicy::FailOpen => {
                tracing::warn!(plugin, error = %reason, "plugin skipped (fail-open)");
                skipped.push(SkippedPlugin {
                    plugin,
                    hook: hooked.plugin.hook(),
                    reason,
                    limit: failure.limit(),
                });
                Ok(())
            }
        }
    }
}

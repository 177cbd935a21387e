//! Builds the domain's parts from the configuration: the API clients and
//! the plugins (loaded, checked against their hook, guarded). Shared by the
//! start and by reload.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::{ApiClients, Client};
use crate::cache::{BackendError, CacheBackend, PluginCache};
use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::runtime::{HookKind, LoadError, PluginRuntime, RuntimeError};
use crate::storage::StorageError;
use crate::supervisor::{Guard, StateStore};
use crate::upload::{HookedPlugin, PluginSet, UploadError};

/// The service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A plugin could not be loaded.
    #[error("plugin `{name}` ({path})")]
    Plugin {
        /// Its name.
        name: String,
        /// Its component path.
        path: String,
        /// Why.
        source: LoadError,
    },
    /// The plugin's component targets another hook than configured.
    #[error(
        "plugin `{name}` is configured as {configured:?} but its component targets world `{actual}`"
    )]
    HookMismatch {
        /// Its name.
        name: String,
        /// `hook` in the config.
        configured: HookKind,
        /// The component's world.
        actual: &'static str,
    },
    /// Storage backend unreachable or unusable.
    #[error("storage")]
    Storage(#[from] StorageError),
    /// Cache backend unreachable.
    #[error("cache")]
    Cache(#[from] BackendError),
    /// The wasm runtime.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The pipeline.
    #[error("upload pipeline")]
    Upload(#[from] UploadError),
    /// The post-store job queue cannot be opened.
    #[error("post-store job queue")]
    Jobs(#[from] crate::jobs::JobError),
    /// Listening failed.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Refused to run without authentication on a public address.
    #[error(
        "no [[clients]] are configured, so uploads are unauthenticated; that is only allowed on a loopback address, not {0}"
    )]
    OpenOnPublicAddress(String),
}

/// The API clients of `config`.
pub fn clients_for(config: &Config) -> Result<ApiClients, StartError> {
    if config.clients.is_empty() {
        let ip = config.server.listen.ip();
        if !ip.is_loopback() {
            return Err(StartError::OpenOnPublicAddress(
                config.server.listen.to_string(),
            ));
        }
        tracing::warn!(
            "no [[clients]] configured: accepting unauthenticated uploads on loopback only"
        );
        return Ok(ApiClients::open(Client {
            name: "anonymous".into(),
            max_body_bytes: config.server.max_body_bytes,
            allowed_content_types: Vec::new(),
            max_concurrent_uploads: config.server.max_uploads_per_client,
        }));
    }
    Ok(ApiClients::with_keys(config.clients.iter().map(|c| {
        (
            c.api_key.clone(),
            Client {
                name: c.name.clone(),
                max_body_bytes: c.max_body_bytes.unwrap_or(config.server.max_body_bytes),
                allowed_content_types: c.allowed_content_types.clone(),
                max_concurrent_uploads: c
                    .max_concurrent_uploads
                    .unwrap_or(config.server.max_uploads_per_client),
            },
        )
    })))
}

/// Loads every configured plugin, sorted per hook by `order`.
pub fn load_plugins(
    runtime: &PluginRuntime,
    config: &Config,
    cache: &Arc<dyn CacheBackend>,
    embedded: bool,
    metrics: &Arc<Metrics>,
) -> Result<PluginSet, StartError> {
    let states = Arc::new(StateStore::new(Arc::clone(cache), &config.cache.prefix));
    let mut configured: Vec<_> = config.plugins.iter().collect();
    configured.sort_by_key(|p| p.order);
    let mut set = PluginSet::default();
    for pc in configured {
        if embedded && !pc.component.exists() {
            tracing::warn!(plugin = %pc.name, path = %pc.component.display(), "example plugin not built; skipping it (run scripts/build-plugins.sh)");
            continue;
        }
        let plugin_cache = PluginCache::new(
            Arc::clone(cache),
            &config.cache.prefix,
            &pc.name,
            pc.cache,
            Duration::from_millis(config.cache.op_timeout_ms),
        );
        let plugin = runtime
            .load_file(&pc.name, &pc.component, pc.budget, plugin_cache)
            .map_err(|source| StartError::Plugin {
                name: pc.name.clone(),
                path: pc.component.display().to_string(),
                source,
            })?;
        if plugin.hook() != pc.hook {
            return Err(StartError::HookMismatch {
                name: pc.name.clone(),
                configured: pc.hook,
                actual: plugin.hook().world(),
            });
        }
        tracing::info!(plugin = %pc.name, hook = pc.hook.world(), order = pc.order, "plugin loaded");
        metrics.plugin_active(&pc.name, true);
        let guard = Guard::new(
            &pc.name,
            pc.containment,
            Arc::clone(&states),
            Arc::clone(metrics),
        );
        let hooked = Arc::new(HookedPlugin {
            plugin,
            on_failure: pc.on_failure,
            guard,
        });
        match pc.hook {
            HookKind::Processor => set.processors.push(hooked),
            HookKind::Extension => set.extensions.push(hooked),
        }
    }
    Ok(set)
}

//! The operators' side: plugin state (quarantine, enable, disable) and hot
//! reload of the plugin configuration.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::assemble::{StartError, clients_for, load_plugins};
use crate::auth::ApiClients;
use crate::budget::Budget;
use crate::cache::{BackendError, CacheBackend};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::resumable::Resumable;
use crate::runtime::{HookKind, PluginRuntime};
use crate::supervisor::{Containment, GuardCounters, PluginState, Violation};
use crate::upload::{FailurePolicy, UploadService};

/// Where the configuration comes from, to read it again on reload.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A file given with `--config`.
    File(PathBuf),
    /// The embedded defaults, with plugins from `plugins`. `admin_token`
    /// stands in for their empty `admin.token` unless AIRLOCK_ADMIN_TOKEN
    /// gives one (`airlock serve` makes one up, so that the dashboard works
    /// on a first run), the same on every reload.
    Embedded {
        /// Where the example plugins' components are.
        plugins: PathBuf,
        /// The admin token when the environment sets none.
        admin_token: Option<String>,
    },
    /// A configuration built in code (tests, embedders): reload re-reads
    /// its plugin files.
    Fixed(Box<Config>),
}

impl ConfigSource {
    /// Reads (again) the configuration.
    pub fn read(&self) -> Result<Config, StartError> {
        Ok(match self {
            ConfigSource::File(path) => Config::load(path)?,
            ConfigSource::Embedded {
                plugins,
                admin_token,
            } => {
                let mut config = Config::embedded(plugins)?;
                if let Some(token) = admin_token
                    .as_ref()
                    .filter(|_| config.admin.token.is_empty())
                {
                    config.admin.token.clone_from(token);
                }
                config
            }
            ConfigSource::Fixed(config) => (**config).clone(),
        })
    }
}

/// A plugin as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    /// Name.
    pub name: String,
    /// Hook.
    pub hook: HookKind,
    /// Active, quarantined or disabled.
    pub state: PluginState,
    /// Why it is not active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Failure policy.
    pub on_failure: FailurePolicy,
    /// Budget.
    pub budget: Budget,
    /// Bulkhead and breaker settings.
    pub containment: Containment,
    /// Counters since load.
    pub counters: GuardCounters,
    /// The last budget stop or crash.
    pub last_violation: Option<Violation>,
    /// SHA-256 of the component.
    pub sha256: String,
}

/// An admin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No plugin by that name.
    #[error("no plugin named `{0}`")]
    UnknownPlugin(String),
    /// The shared state store did not answer.
    #[error("cannot change plugin state: {0}")]
    State(#[from] BackendError),
    /// The new configuration was refused; the old one keeps serving.
    #[error("reload refused, still serving the previous configuration")]
    Reload(#[source] StartError),
    /// The reload task itself failed.
    #[error("reload failed, still serving the previous configuration")]
    ReloadTask(#[source] tokio::task::JoinError),
}

/// What a reload changed.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// The plugins now loaded, processors first.
    pub plugins: Vec<String>,
    /// API clients now configured.
    pub clients: usize,
    /// Changed sections that only take effect after a restart.
    pub restart_needed: Vec<&'static str>,
}

/// Everything a running service needs to apply a reload.
pub struct Running {
    /// The pipeline (plugins are swapped in it).
    pub service: Arc<UploadService>,
    /// Resumable uploads, finished by `service`.
    pub tus: Arc<Resumable>,
    /// API clients (swapped).
    pub clients: Arc<ApiClients>,
    /// The runtime that compiles the new plugins.
    pub runtime: Arc<PluginRuntime>,
    /// The plugins' cache backend.
    pub cache: Arc<dyn CacheBackend>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The configuration the service started with.
    pub config: Config,
}

/// Operations behind the admin API and SIGHUP.
pub struct Admin {
    source: ConfigSource,
    running: Arc<Running>,
    // One reload at a time; holds the sections a restart would apply.
    reloading: tokio::sync::Mutex<()>,
}

impl Admin {
    /// Admin over a running service.
    pub fn new(source: ConfigSource, running: Arc<Running>) -> Self {
        Self {
            source,
            running,
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// Every plugin with its state and counters.
    pub async fn plugins(&self) -> Vec<PluginStatus> {
        let set = self.running.service.plugins();
        let mut out = Vec::new();
        for hooked in set.all() {
            let record = hooked.guard.state().await;
            let (counters, last_violation) = hooked.guard.counters();
            out.push(PluginStatus {
                name: hooked.plugin.name().into(),
                hook: hooked.plugin.hook(),
                state: record.as_ref().map_or(PluginState::Active, |r| r.state),
                reason: record.map(|r| r.reason),
                on_failure: hooked.on_failure,
                budget: *hooked.plugin.budget(),
                containment: *hooked.guard.containment(),
                counters,
                last_violation,
                sha256: hooked.plugin.info().sha256.clone(),
            });
        }
        out
    }

    /// Re-enables a quarantined or disabled plugin (`true`), or stops
    /// invoking it (`false`).
    pub async fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), AdminError> {
        let set = self.running.service.plugins();
        let hooked = set
            .find(name)
            .ok_or_else(|| AdminError::UnknownPlugin(name.into()))?;
        if enabled {
            hooked.guard.enable().await?;
        } else {
            hooked.guard.disable().await?;
        }
        Ok(())
    }

    /// Re-reads the configuration and plugin files and swaps the plugins
    /// and API clients. In-flight invocations finish on the old plugins; an
    /// invalid config or component leaves everything as it was.
    pub async fn reload(&self) -> Result<ReloadReport, AdminError> {
        let _one_at_a_time = self.reloading.lock().await;
        let source = self.source.clone();
        let runtime = Arc::clone(&self.running.runtime);
        let cache = Arc::clone(&self.running.cache);
        let metrics = Arc::clone(&self.running.metrics);
        let embedded = matches!(source, ConfigSource::Embedded { .. });
        // Compiling components is CPU work: keep it off the request threads.
        let loaded = tokio::task::spawn_blocking(move || {
            let config = source.read()?;
            let clients = clients_for(&config)?;
            let plugins = load_plugins(&runtime, &config, &cache, embedded, &metrics)?;
            Ok::<_, StartError>((config, clients, plugins))
        })
        .await
        .map_err(AdminError::ReloadTask)?;
        let (config, clients, plugins) = loaded.map_err(|e| {
            tracing::error!(error = %crate::text::chain(&e), "reload refused; previous configuration keeps serving");
            AdminError::Reload(e)
        })?;
        let report = ReloadReport {
            plugins: plugins.all().map(|h| h.plugin.name().to_string()).collect(),
            clients: config.clients.len(),
            restart_needed: restart_needed(&self.running.config, &config),
        };
        self.running.service.replace_plugins(plugins);
        self.running.clients.replace_with(clients);
        if report.restart_needed.is_empty() {
            tracing::info!(plugins = ?report.plugins, clients = report.clients, "configuration reloaded");
        } else {
            tracing::warn!(
                plugins = ?report.plugins,
                sections = ?report.restart_needed,
                "configuration reloaded; changes to these sections apply after a restart"
            );
        }
        Ok(report)
    }
}

/// The sections of `new` that differ from `running` and are only read at
/// start.
fn restart_needed(running: &Config, new: &Config) -> Vec<&'static str> {
    const READ_AT_START: [&str; 5] = ["server", "storage", "cache", "runtime", "admin"];
    let (running, new) = (
        serde_json::to_value(running).ok(),
        serde_json::to_value(new).ok(),
    );
    READ_AT_START
        .into_iter()
        .filter(|section| {
            let of =
                |config: &Option<serde_json::Value>| config.as_ref().map(|c| c[*section].clone());
            of(&running) != of(&new)
        })
        .collect()
}

//! Wiring: builds storage, cache, runtime, plugins and the HTTP app from a
//! [`Config`], and serves it until a shutdown signal.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use crate::admin::{Admin, ConfigSource, Running};
use crate::cache::{BackendError, CacheBackend, MemoryBackend, PluginCache, RedisBackend};
use crate::config::{CacheBackendKind, Config, ConfigError, StorageBackend};
use crate::http::{AppState, Auth, ConnectionLimits};
use crate::metrics::Metrics;
use crate::runtime::{HookKind, LoadError, PluginRuntime, RuntimeConfig, RuntimeError};
use crate::storage::{BlobStore, LocalStore, S3Store, StorageError};
use crate::supervisor::{Guard, StateStore};
use crate::upload::{
    BodyTimeouts, Client, HookedPlugin, PipelineLimits, PluginSet, PostStoreWorkers, UploadError,
    UploadService,
};

/// The service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A plugin could not be loaded.
    #[error("plugin `{name}` ({path}): {source}")]
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
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// Cache backend unreachable.
    #[error("cache: {0}")]
    Cache(#[from] BackendError),
    /// The wasm runtime.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The pipeline.
    #[error("upload pipeline: {0}")]
    Upload(#[from] UploadError),
    /// Listening failed.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// Refused to run without authentication on a public address.
    #[error(
        "no [[clients]] are configured, so uploads are unauthenticated; that is only allowed on a loopback address, not {0}"
    )]
    OpenOnPublicAddress(String),
}

/// A built service, ready to serve.
pub struct App {
    /// The HTTP routes.
    pub router: axum::Router,
    /// The pipeline.
    pub service: Arc<UploadService>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Operator operations (also behind SIGHUP).
    pub admin: Arc<Admin>,
    workers: PostStoreWorkers,
    grace: Duration,
    connections: ConnectionLimits,
    sweep: SweepSchedule,
}

/// When the orphan sweep runs and what it removes.
#[derive(Debug, Clone, Copy)]
struct SweepSchedule {
    grace: Duration,
    /// `None`: only at start.
    every: Option<Duration>,
}

/// Where the embedded defaults look for the example plugins.
pub fn default_plugins_dir() -> PathBuf {
    std::env::var_os("AIRLOCK_PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("plugins/dist"))
}

impl App {
    /// Builds everything `config` (read from `source`) describes. With the
    /// embedded defaults, example plugins that are not built yet are skipped
    /// with a warning instead of failing the start.
    pub async fn build(config: &Config, source: ConfigSource) -> Result<Self, StartError> {
        config.validate()?;
        let embedded = matches!(source, ConfigSource::Embedded(_));
        let metrics = Arc::new(Metrics::new());
        let store: Arc<dyn BlobStore> = match config.storage.backend {
            StorageBackend::Local => Arc::new(LocalStore::open(&config.storage.path).await?),
            StorageBackend::S3 => Arc::new(S3Store::connect(&config.storage.s3).await?),
        };
        let op_timeout = Duration::from_millis(config.cache.op_timeout_ms);
        let cache: Arc<dyn CacheBackend> = match config.cache.backend {
            CacheBackendKind::Memory => {
                Arc::new(MemoryBackend::new(config.cache.memory_capacity_bytes))
            }
            CacheBackendKind::Redis => Arc::new(
                RedisBackend::connect(
                    &config.cache.redis_url,
                    op_timeout.max(Duration::from_secs(2)),
                )
                .await?,
            ),
        };
        let runtime = Arc::new(PluginRuntime::new(RuntimeConfig {
            fuel_metering: true,
            compiled_cache_dir: config
                .runtime
                .compiled_cache_dir
                .clone()
                .or_else(|| Some(config.storage.path.join(".compiled"))),
            ..config.runtime.clone()
        })?);
        let plugins = load_plugins(&runtime, config, &cache, embedded, &metrics)?;
        let (service, workers) = UploadService::start(
            store,
            plugins,
            &config.storage.path.join(".tmp"),
            Arc::clone(&metrics),
            PipelineLimits {
                concurrent_uploads: config.server.max_concurrent_uploads,
                body_timeouts: BodyTimeouts {
                    read: Duration::from_millis(config.server.body_read_timeout_ms),
                    deadline: Duration::from_secs(config.server.upload_deadline_seconds),
                },
                queue: config.server.post_store_queue,
                workers: config.server.post_store_workers,
            },
        )
        .await?;
        let auth = Arc::new(auth_for(config)?);
        let admin = Arc::new(Admin::new(
            source,
            Running {
                service: Arc::clone(&service),
                auth: Arc::clone(&auth),
                runtime,
                cache: Arc::clone(&cache),
                metrics: Arc::clone(&metrics),
                config: config.clone(),
            },
        ));
        if config.admin.token.is_empty() {
            tracing::info!(
                "admin API disabled: set admin.token or AIRLOCK_ADMIN_TOKEN to enable it"
            );
        }
        let router = crate::http::router(AppState {
            service: Arc::clone(&service),
            auth,
            metrics: Arc::clone(&metrics),
            cache,
            admin: Arc::clone(&admin),
            admin_token: (!config.admin.token.is_empty())
                .then(|| crate::http::digest(&config.admin.token)),
        });
        Ok(Self {
            router,
            service,
            metrics,
            admin,
            workers,
            grace: Duration::from_secs(config.server.shutdown_grace_seconds),
            connections: ConnectionLimits {
                max_connections: config.server.max_connections,
                header_read_timeout: Duration::from_millis(config.server.header_read_timeout_ms),
                keep_alive_timeout: Duration::from_millis(config.server.keep_alive_timeout_ms),
                write_timeout: Duration::from_millis(config.server.write_timeout_ms),
            },
            sweep: SweepSchedule {
                grace: Duration::from_secs(config.storage.orphan_grace_seconds),
                every: (config.storage.orphan_sweep_interval_seconds > 0)
                    .then(|| Duration::from_secs(config.storage.orphan_sweep_interval_seconds)),
            },
        })
    }

    /// Serves on `listener` until `shutdown` resolves, then stops accepting,
    /// finishes in-flight requests and drains the post-store queue.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let App {
            router,
            service,
            workers,
            grace,
            admin,
            metrics,
            connections: limits,
            sweep,
        } = self;
        let reload_on_hup = tokio::spawn(reload_on_sighup(admin));
        let sweeper = tokio::spawn(sweep_orphans(
            Arc::clone(service.store()),
            Arc::clone(&metrics),
            sweep,
        ));
        let signalled = Arc::new(tokio::sync::Notify::new());
        let signalled_at = Arc::new(std::sync::OnceLock::new());
        let (notify, at) = (Arc::clone(&signalled), Arc::clone(&signalled_at));
        let server = crate::http::serve(listener, router, limits, metrics, async move {
            shutdown.await;
            at.get_or_init(Instant::now);
            notify.notify_one();
        });
        // In-flight requests get the grace period; a stalled client must not
        // hold a shutdown (a deploy) forever.
        tokio::select! {
            () = server => {}
            () = async {
                signalled.notified().await;
                tokio::time::sleep(grace).await;
            } => tracing::warn!(?grace, "shutdown grace ran out; closing the connections still open"),
        }
        reload_on_hup.abort();
        sweeper.abort();
        service.close_queue();
        let since_signal = signalled_at.get().map_or(Duration::ZERO, Instant::elapsed);
        let left = grace.saturating_sub(since_signal);
        if workers.drain(left).await {
            tracing::info!("post-store queue drained");
        } else {
            tracing::warn!(
                "shutdown grace ran out with post-store jobs still running; their records stay `pending`"
            );
        }
        Ok(())
    }
}

/// The API clients of `config`.
pub fn auth_for(config: &Config) -> Result<Auth, StartError> {
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
        return Ok(Auth::open(Client {
            name: "anonymous".into(),
            max_body_bytes: config.server.max_body_bytes,
            allowed_content_types: Vec::new(),
            max_concurrent_uploads: config.server.max_uploads_per_client,
        }));
    }
    Ok(Auth::with_keys(config.clients.iter().map(|c| {
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

/// Binds `addr`.
pub async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| StartError::Listen {
            addr: addr.to_string(),
            reason: e.to_string(),
        })
}

/// Reloads the configuration on every SIGHUP.
async fn reload_on_sighup(admin: Arc<Admin>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload with POST /admin/reload");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration");
        // The outcome is logged by `reload`.
        let _ = admin.reload().await;
    }
}

/// Sweeps orphaned objects at start, then on `schedule`. A failed sweep is
/// logged and tried again at the next round.
async fn sweep_orphans(store: Arc<dyn BlobStore>, metrics: Arc<Metrics>, schedule: SweepSchedule) {
    loop {
        if let Err(err) = crate::upload::sweep(store.as_ref(), schedule.grace, &metrics).await {
            tracing::warn!(error = %format_args!("{:#}", anyhow::Error::new(err)), "orphan sweep failed");
        }
        let Some(every) = schedule.every else { return };
        tokio::time::sleep(every).await;
    }
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight uploads");
}

//! Wiring: builds storage, cache, runtime, plugins, the pipeline and the
//! operators' side from a [`Config`]; runs the background work of a serving
//! instance (reload on SIGHUP, the orphan sweep); drains on shutdown.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::admin::{Admin, ConfigSource, Running};
use crate::assemble::{StartError, clients_for, load_plugins};
use crate::auth::digest;
use crate::cache::{CacheBackend, MemoryBackend, RedisBackend};
use crate::config::{CacheBackendKind, Config, StorageBackend};
use crate::jobs::{JobQueue, Journal, StreamQueue, WithFallback};
use crate::lock::{Locks, RedisLocks};
use crate::metrics::Metrics;
use crate::resumable::{Resumable, Settings as TusSettings};
use crate::runtime::{PluginRuntime, RuntimeConfig};
use crate::storage::{BlobStore, LocalStaging, LocalStore, S3Staging, S3Store, Staging};
use crate::upload::{
    BodyTimeouts, PipelineLimits, PostStoreSettings, PostStoreWorkers, UploadService,
};

/// A built service, ready to serve.
pub struct App {
    /// What runs: pipeline, API clients, runtime, cache, metrics, config.
    pub running: Arc<Running>,
    /// Operator operations (also behind SIGHUP).
    pub admin: Arc<Admin>,
    /// SHA-256 of the admin token; `None` disables the admin API.
    pub admin_token: Option<[u8; 32]>,
    store: Arc<dyn BlobStore>,
    workers: PostStoreWorkers,
    sweep: SweepSchedule,
    /// How often expired resumable uploads are removed.
    expiry_every: Duration,
}

/// When the orphan sweep runs and what it removes.
#[derive(Debug, Clone, Copy)]
struct SweepSchedule {
    grace: Duration,
    /// `None`: only at start.
    every: Option<Duration>,
    /// When this process started: older temporary files are writes the
    /// previous one cut short.
    started: std::time::SystemTime,
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
        let started = std::time::SystemTime::now();
        let embedded = matches!(source, ConfigSource::Embedded { .. });
        let metrics = Arc::new(Metrics::new());
        let (store, staging): (Arc<dyn BlobStore>, Arc<dyn Staging>) = match config.storage.backend
        {
            StorageBackend::Local => {
                let local = LocalStore::open(&config.storage.path).await?;
                (
                    Arc::new(local.clone()),
                    Arc::new(LocalStaging::open(local).await?),
                )
            }
            StorageBackend::S3 => {
                let s3 = S3Store::connect(&config.storage.s3).await?;
                (Arc::new(s3.clone()), Arc::new(S3Staging::new(s3)))
            }
        };
        let op_timeout = Duration::from_millis(config.cache.op_timeout_ms);
        let lock_ttl = Duration::from_millis(config.tus.lock_ttl_ms);
        let (cache, locks, jobs): (Arc<dyn CacheBackend>, Locks, Arc<dyn JobQueue>) =
            match config.cache.backend {
                CacheBackendKind::Memory => (
                    Arc::new(MemoryBackend::new(config.cache.memory_capacity_bytes)),
                    Locks::in_process(lock_ttl),
                    Arc::new(Journal::open(&config.storage.path.join(".jobs")).await?),
                ),
                CacheBackendKind::Redis => {
                    let redis = RedisBackend::connect(
                        &config.cache.redis_url,
                        op_timeout.max(Duration::from_secs(2)),
                    )
                    .await?;
                    // Plugins' keys are `<prefix>:<plugin>:<key>` with a
                    // non-empty name: none can start with `<prefix>::`.
                    let locks = RedisLocks::new(
                        redis.connection(),
                        &format!("{}::lock:", config.cache.prefix),
                    );
                    let shared = StreamQueue::open(
                        redis.connection(),
                        &config.cache.prefix,
                        Duration::from_secs(config.server.post_store_visibility_seconds),
                    )
                    .await?;
                    // Redis down: jobs queue on this node's disk and run here.
                    let jobs = WithFallback::new(
                        shared,
                        Journal::open(&config.storage.path.join(".jobs")).await?,
                    );
                    (
                        Arc::new(redis),
                        Locks::new(Arc::new(locks), lock_ttl),
                        Arc::new(jobs),
                    )
                }
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
            Arc::clone(&store),
            plugins,
            &config.storage.path.join(".tmp"),
            Arc::clone(&metrics),
            jobs,
            PipelineLimits {
                concurrent_uploads: config.server.max_concurrent_uploads,
                body_timeouts: BodyTimeouts {
                    read: Duration::from_millis(config.server.body_read_timeout_ms),
                    deadline: Duration::from_secs(config.server.upload_deadline_seconds),
                },
                post_store: PostStoreSettings {
                    workers: config.server.post_store_workers,
                    max_attempts: config.server.post_store_max_attempts,
                },
            },
        )
        .await?;
        let clients = Arc::new(clients_for(config)?);
        let tus = Arc::new(Resumable::new(
            staging,
            locks,
            Arc::clone(&service),
            Arc::clone(&metrics),
            TusSettings {
                expiration: Duration::from_secs(config.tus.expiration_seconds),
                lock_wait: Duration::from_millis(config.tus.lock_wait_ms),
                max_size: config.tus_max_size(),
            },
        ));
        let running = Arc::new(Running {
            service,
            tus,
            clients,
            runtime,
            cache,
            metrics,
            config: config.clone(),
        });
        let admin = Arc::new(Admin::new(source, Arc::clone(&running)));
        if config.admin.token.is_empty() {
            tracing::info!(
                "admin API disabled: set admin.token or AIRLOCK_ADMIN_TOKEN to enable it"
            );
        }
        Ok(Self {
            admin_token: (!config.admin.token.is_empty()).then(|| digest(&config.admin.token)),
            running,
            admin,
            store,
            workers,
            sweep: SweepSchedule {
                started,
                grace: Duration::from_secs(config.storage.orphan_grace_seconds),
                every: (config.storage.orphan_sweep_interval_seconds > 0)
                    .then(|| Duration::from_secs(config.storage.orphan_sweep_interval_seconds)),
            },
            expiry_every: Duration::from_secs(config.tus.expiry_sweep_interval_seconds),
        })
    }

    /// Starts the background work of a serving instance: reload on SIGHUP,
    /// the orphan sweep and the expiry of resumable uploads. It stops when
    /// the handle is dropped.
    pub fn start_background(&self) -> Background {
        Background(vec![
            tokio::spawn(reload_on_sighup(Arc::clone(&self.admin))),
            tokio::spawn(expire_resumable(
                Arc::clone(&self.running.tus),
                self.expiry_every,
            )),
            tokio::spawn(report_queue(
                Arc::clone(self.running.service.jobs()),
                Arc::clone(&self.running.metrics),
            )),
            tokio::spawn(sweep_orphans(
                Arc::clone(&self.store),
                Arc::clone(&self.running.metrics),
                self.sweep,
            )),
        ])
    }

    /// Once serving stopped: takes no more post-store jobs and waits up to
    /// `left` for the running ones. False if some were still running (they
    /// run again at the next start, as do the queued ones).
    pub async fn drain(self, left: Duration) -> bool {
        let drained = self.workers.drain(left).await;
        if drained {
            tracing::info!("post-store workers stopped; queued jobs wait for the next start");
        } else {
            tracing::warn!(
                "shutdown grace ran out with post-store jobs still running; they run again at the next start"
            );
        }
        drained
    }
}

/// Background tasks of a serving instance; aborted on drop.
pub struct Background(Vec<JoinHandle<()>>);

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
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
    let store = store.as_ref();
    let mut swept =
        crate::upload::sweep_at_start(store, schedule.grace, schedule.started, &metrics).await;
    loop {
        if let Err(err) = swept {
            tracing::warn!(error = %crate::text::chain(&err), "orphan sweep failed");
        }
        let Some(every) = schedule.every else { return };
        tokio::time::sleep(every).await;
        swept = crate::upload::sweep(store, schedule.grace, &metrics).await;
    }
}

/// Publishes the post-store queue's depth, oldest job and dead letters as
/// metrics, every second.
async fn report_queue(jobs: Arc<dyn JobQueue>, metrics: Arc<Metrics>) {
    loop {
        match jobs.stats().await {
            Ok(stats) => {
                metrics.post_store_queue(stats.depth, stats.oldest_age_ms / 1000, stats.dead);
            }
            Err(err) => {
                tracing::warn!(error = %crate::text::chain(&err), "cannot read the post-store queue's stats")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Removes expired resumable uploads every `every` (at start first).
async fn expire_resumable(tus: Arc<Resumable>, every: Duration) {
    loop {
        if let Err(err) = tus.sweep_expired().await {
            tracing::warn!(error = %crate::text::chain(&err), "expiry of resumable uploads failed");
        }
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

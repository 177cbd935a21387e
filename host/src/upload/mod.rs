//! The upload pipeline: stream to a temp file, pre-store hooks, durable
//! commit, record, then post-store hooks from a durable job queue.

mod admission;
mod catalog;
mod error;
mod ingest;
mod names;
mod plugins;
mod post_store;
mod record;
mod spool;
mod stored;
mod sweep;
mod workers;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use self::admission::OpenUploads;
pub use self::admission::{Admission, BodyTimeouts};
use self::error::internal;
pub use self::error::{BoxError, UploadError};
use self::ingest::clean_temp_dir;
pub use self::ingest::{Batch, Ingested};
pub use self::names::{sanitize_filename, valid_id};
pub use self::plugins::{FailurePolicy, HookedPlugin, PluginSet};
pub use self::record::{DerivedRecord, SkippedPlugin, UploadRecord, keys};
pub use self::stored::{StoredContent, StoredUpload};
pub use self::sweep::{SweepReport, sweep, sweep_at_start};
use self::workers::Waiters;
pub use self::workers::{PostStoreSettings, PostStoreWorkers};
use crate::auth::Client;
use crate::jobs::JobQueue;
use crate::metrics::Metrics;
use crate::storage::{BlobStore, Object, StorageError};

/// The pipeline, shared by every request.
pub struct UploadService {
    store: Arc<dyn BlobStore>,
    plugins: RwLock<Arc<PluginSet>>,
    tmp_dir: PathBuf,
    metrics: Arc<Metrics>,
    jobs: Arc<dyn JobQueue>,
    post_store: PostStoreSettings,
    waiters: Waiters,
    // Bounds uploads being processed: each holds plugin instances. Taken
    // once the body has arrived, so slow clients cannot hold it.
    in_flight: tokio::sync::Semaphore,
    open: OpenUploads,
    body_timeouts: BodyTimeouts,
}

/// Sizes of the pipeline's queues and pools.
#[derive(Debug, Clone, Copy)]
pub struct PipelineLimits {
    /// Uploads processed at once; more wait.
    pub concurrent_uploads: usize,
    /// Limits on receiving a body.
    pub body_timeouts: BodyTimeouts,
    /// Post-store workers and retries.
    pub post_store: PostStoreSettings,
}

impl UploadService {
    /// Builds the service and starts its post-store workers on `jobs`
    /// (jobs queued before, by a previous run or another node, run too).
    /// Leftover temp files in `tmp_dir` (from a crash) are removed: they
    /// were never committed.
    pub async fn start(
        store: Arc<dyn BlobStore>,
        plugins: PluginSet,
        tmp_dir: &Path,
        metrics: Arc<Metrics>,
        jobs: Arc<dyn JobQueue>,
        limits: PipelineLimits,
    ) -> Result<(Arc<Self>, PostStoreWorkers), UploadError> {
        let PipelineLimits {
            concurrent_uploads,
            body_timeouts,
            post_store,
        } = limits;
        clean_temp_dir(tmp_dir)
            .await
            .map_err(internal("cleaning the temp directory"))?;
        let service = Arc::new(Self {
            store,
            plugins: RwLock::new(Arc::new(plugins)),
            tmp_dir: tmp_dir.to_path_buf(),
            metrics,
            jobs,
            post_store,
            waiters: Waiters::default(),
            in_flight: tokio::sync::Semaphore::new(concurrent_uploads.max(1)),
            open: OpenUploads::default(),
            body_timeouts,
        });
        let workers = workers::spawn_workers(&service, post_store.workers)?;
        Ok((service, workers))
    }

    /// Opens stored object `key`, or the byte `range` of it.
    pub async fn open_object(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<Object, UploadError> {
        Ok(self.store.get(key, range).await?)
    }

    /// Admits one upload request of `client` (a resumable upload's PATCH),
    /// or refuses it when the client has its share open already.
    pub fn admit(&self, client: &Client) -> Result<Admission, UploadError> {
        self.open.admit(client, self.body_timeouts)
    }

    /// The storage.
    pub fn store(&self) -> &Arc<dyn BlobStore> {
        &self.store
    }

    /// Counts `bytes` received from clients.
    pub fn count_received(&self, bytes: u64) {
        self.metrics.bytes_in(bytes);
    }

    /// Checks the storage answers (readiness).
    pub async fn ping(&self) -> Result<(), StorageError> {
        self.store.ping().await
    }

    /// The storage backend's kind (`local`, `s3`).
    pub fn storage_kind(&self) -> &'static str {
        self.store.kind()
    }

    /// The current plugins.
    pub fn plugins(&self) -> Arc<PluginSet> {
        Arc::clone(&self.plugins.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Swaps in a new plugin set; running invocations finish on the old one.
    pub fn replace_plugins(&self, plugins: PluginSet) {
        *self.plugins.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(plugins);
    }

    /// The post-store job queue.
    pub fn jobs(&self) -> &Arc<dyn JobQueue> {
        &self.jobs
    }
}

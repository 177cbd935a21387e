//! The upload pipeline: stream to a temp file, pre-store hooks, durable
//! commit, record, then post-store hooks on a bounded background queue.

mod admission;
mod catalog;
mod error;
mod ingest;
mod names;
mod plugins;
mod post_store;
mod record;
mod stored;
mod sweep;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio::sync::mpsc;

use self::admission::OpenUploads;
pub use self::admission::{Admission, BodyTimeouts};
use self::error::internal;
pub use self::error::{BoxError, UploadError};
use self::ingest::clean_temp_dir;
pub use self::ingest::{Batch, Ingested};
pub use self::names::{sanitize_filename, valid_id};
pub use self::plugins::{FailurePolicy, HookedPlugin, PluginSet};
use self::post_store::PostStoreJob;
pub use self::post_store::PostStoreWorkers;
pub use self::record::{DerivedRecord, SkippedPlugin, UploadRecord, keys};
pub use self::stored::{StoredContent, StoredUpload};
pub use self::sweep::{SweepReport, sweep};
use crate::auth::Client;
use crate::metrics::Metrics;
use crate::storage::{BlobStore, Object, StorageError};

/// The pipeline, shared by every request.
pub struct UploadService {
    store: Arc<dyn BlobStore>,
    plugins: RwLock<Arc<PluginSet>>,
    tmp_dir: PathBuf,
    metrics: Arc<Metrics>,
    queue: Mutex<Option<mpsc::Sender<PostStoreJob>>>,
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
    /// Post-store jobs that may wait.
    pub queue: usize,
    /// Post-store worker tasks.
    pub workers: usize,
}

impl UploadService {
    /// Builds the service and starts `workers` post-store tasks on a queue
    /// of `queue` jobs. Leftover temp files in `tmp_dir` (from a crash) are
    /// removed: they were never committed.
    pub async fn start(
        store: Arc<dyn BlobStore>,
        plugins: PluginSet,
        tmp_dir: &Path,
        metrics: Arc<Metrics>,
        limits: PipelineLimits,
    ) -> Result<(Arc<Self>, PostStoreWorkers), UploadError> {
        let PipelineLimits {
            concurrent_uploads,
            body_timeouts,
            queue,
            workers,
        } = limits;
        clean_temp_dir(tmp_dir)
            .await
            .map_err(internal("cleaning the temp directory"))?;
        let (tx, rx) = mpsc::channel(queue);
        let service = Arc::new(Self {
            store,
            plugins: RwLock::new(Arc::new(plugins)),
            tmp_dir: tmp_dir.to_path_buf(),
            metrics,
            queue: Mutex::new(Some(tx)),
            in_flight: tokio::sync::Semaphore::new(concurrent_uploads.max(1)),
            open: OpenUploads::default(),
            body_timeouts,
        });
        let workers = post_store::spawn_workers(&service, rx, workers);
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

    /// Stops taking post-store jobs; workers exit once the queue is empty.
    pub fn close_queue(&self) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

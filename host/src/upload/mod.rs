//! The upload pipeline: stream to a temp file, pre-store hooks, durable
//! commit, record, then post-store hooks on a bounded background queue.

mod admission;
mod record;
mod sweep;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use self::admission::OpenUploads;
pub use self::admission::{Admission, BodyTimeouts};
pub use self::record::{DerivedRecord, SkippedPlugin, UploadRecord, keys};
pub use self::sweep::{SweepReport, sweep};
use crate::budget::Limit;
use crate::config::FailurePolicy;
use crate::metrics::Metrics;
use crate::runtime::{
    ContentSource, FileContent, HookKind, HookOutput, InvokeError, Plugin, UploadInfo, Verdict,
};
use crate::storage::{BlobStore, StorageError};
use crate::supervisor::{Guard, Refusal};

/// An API client as the pipeline sees it.
#[derive(Debug, Clone)]
pub struct Client {
    /// Its name.
    pub name: String,
    /// Largest body it may upload.
    pub max_body_bytes: u64,
    /// Accepted content types (`image/*` wildcards); empty = any.
    pub allowed_content_types: Vec<String>,
    /// Upload requests it may have open at once.
    pub max_concurrent_uploads: usize,
}

impl Client {
    /// Whether `content_type` is one this client may upload.
    pub fn allows(&self, content_type: &str) -> bool {
        let ty = essence(content_type);
        self.allowed_content_types.is_empty()
            || self.allowed_content_types.iter().any(|pattern| {
                let pattern = pattern.to_ascii_lowercase();
                match pattern.strip_suffix("/*") {
                    Some("*") => true,
                    Some(major) => ty.split('/').next() == Some(major),
                    None => pattern == ty,
                }
            })
    }
}

/// `type/subtype` of a content type, lower-cased, parameters dropped.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
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
enum PluginFailure {
    Refused(Refusal),
    Invoke(InvokeError),
}

impl PluginFailure {
    fn reason(&self) -> String {
        match self {
            PluginFailure::Refused(r) => r.to_string(),
            PluginFailure::Invoke(e) => e.to_string(),
        }
    }

    fn limit(&self) -> Option<Limit> {
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

/// Why an upload (or a read of one) failed; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// 413: over the client's body limit.
    #[error("upload is larger than the {limit} bytes allowed")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// 415: content type not allowed for this client.
    #[error("content type {0:?} is not accepted")]
    UnsupportedType(String),
    /// 422: a processor rejected it.
    #[error("rejected by plugin `{plugin}`: {reason}")]
    Rejected {
        /// The plugin.
        plugin: String,
        /// Its reason, for the client.
        reason: String,
    },
    /// 503: a fail-closed plugin failed.
    #[error("plugin `{plugin}` failed and its hook is fail-closed: {reason}")]
    PluginFailed {
        /// The plugin.
        plugin: String,
        /// What happened.
        reason: String,
    },
    /// 429: the client already has its share of uploads open.
    #[error("{limit} uploads of this client are already in progress; retry when one is done")]
    TooManyUploads {
        /// The client's cap.
        limit: usize,
    },
    /// 408: the body stalled.
    #[error("the request body sent nothing for {seconds} s")]
    SlowBody {
        /// The read timeout.
        seconds: f64,
    },
    /// 408: the body took too long as a whole.
    #[error("the request body did not arrive within {seconds} s")]
    UploadDeadline {
        /// The deadline.
        seconds: u64,
    },
    /// 400: the request body could not be read.
    #[error("cannot read the request body: {0}")]
    Body(String),
    /// 404: no such upload for this client.
    #[error("no such upload")]
    NotFound,
    /// 416: bad range.
    #[error("range not satisfiable for {size} bytes")]
    RangeNotSatisfiable {
        /// Object size.
        size: u64,
    },
    /// 503: storage failed.
    #[error("storage unavailable: {0}")]
    Storage(String),
    /// 500: local I/O.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StorageError> for UploadError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::NotFound(_) => UploadError::NotFound,
            StorageError::RangeNotSatisfiable { size } => UploadError::RangeNotSatisfiable { size },
            StorageError::InvalidKey(key) => UploadError::Internal(format!("invalid key {key}")),
            // The cause is flattened into the message until upload errors
            // keep a source.
            StorageError::Unavailable { what, source } => UploadError::Storage(match source {
                Some(source) => format!("{what}: {:#}", anyhow::Error::from_boxed(source)),
                None => what,
            }),
        }
    }
}

fn internal(err: impl std::fmt::Display) -> UploadError {
    UploadError::Internal(err.to_string())
}

/// An accepted upload, and a way to wait for its post-store hooks.
pub struct Ingested {
    /// The record as committed.
    pub record: UploadRecord,
    /// Bytes received from the client (before any replacement).
    pub received: u64,
    /// Resolves with the final record once post-store hooks have run.
    pub post_store_done: Option<oneshot::Receiver<UploadRecord>>,
}

/// What the processors made of an upload.
struct Processed {
    metadata: BTreeMap<String, String>,
    skipped: Vec<SkippedPlugin>,
    /// What later hooks read: the upload, or the last replacement.
    content: Arc<dyn ContentSource>,
    replaced: Option<Bytes>,
}

struct PostStoreJob {
    record: UploadRecord,
    content: Arc<dyn ContentSource>,
    plugins: Arc<PluginSet>,
    done: oneshot::Sender<UploadRecord>,
    // Keeps a temp file alive (and deletes it after) when the content was
    // uploaded to remote storage.
    _temp: Option<tempfile::TempPath>,
}

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

/// Post-store worker tasks; await them after closing the queue to drain it.
pub struct PostStoreWorkers(Vec<JoinHandle<()>>);

impl PostStoreWorkers {
    /// Waits for queued jobs to finish, up to `grace`.
    pub async fn drain(self, grace: Duration) -> bool {
        let all = futures::future::join_all(self.0);
        tokio::time::timeout(grace, all).await.is_ok()
    }
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
        clean_temp_dir(tmp_dir).await.map_err(internal)?;
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
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let handles = (0..workers)
            .map(|_| {
                let service = Arc::clone(&service);
                let rx = Arc::clone(&rx);
                tokio::spawn(async move {
                    loop {
                        let job = rx.lock().await.recv().await;
                        let Some(job) = job else { break };
                        service.post_store(job).await;
                    }
                })
            })
            .collect();
        Ok((service, PostStoreWorkers(handles)))
    }

    /// The storage backend.
    pub fn store(&self) -> &Arc<dyn BlobStore> {
        &self.store
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

    /// Admits one upload request of `client` (one or more files), or
    /// refuses it when the client has its share open already.
    pub fn admit(&self, client: &Client) -> Result<Admission, UploadError> {
        self.open.admit(client, self.body_timeouts)
    }

    /// Runs one upload of an admitted request through the pipeline.
    #[tracing::instrument(name = "upload", skip_all, fields(client = %client.name, id))]
    pub async fn ingest<S, E>(
        &self,
        admission: &Admission,
        client: &Client,
        filename: &str,
        content_type: &str,
        body: S,
    ) -> Result<Ingested, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let content_type = essence(content_type);
        if !client.allows(&content_type) {
            return Err(UploadError::UnsupportedType(content_type));
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        tracing::Span::current().record("id", id.as_str());
        let temp = self.tmp_dir.join(format!("{id}.part"));
        let temp = tempfile::TempPath::try_from_path(temp).map_err(internal)?;
        let (size, sha256) = self
            .receive(admission, body, &temp, client.max_body_bytes)
            .await?;
        let received = size;
        let _slot = self.in_flight.acquire().await.map_err(internal)?;

        let plugins = self.plugins();
        let filename = sanitize_filename(filename);
        let mut upload = UploadInfo {
            id: id.clone(),
            client: client.name.clone(),
            filename: filename.clone(),
            content_type,
            metadata: Vec::new(),
        };
        let file: Arc<dyn ContentSource> = Arc::new(FileContent::open(&temp).map_err(internal)?);
        let Processed {
            metadata,
            skipped,
            content,
            replaced,
        } = self.process(&plugins, &mut upload, file).await?;

        let content_key = keys::content(&id);
        let (size, sha256, keep_temp) = match replaced {
            Some(bytes) => {
                let digest = hex::encode(Sha256::digest(&bytes));
                let len = bytes.len() as u64;
                self.store
                    .put_bytes(&content_key, bytes, &upload.content_type)
                    .await?;
                (len, digest, None)
            }
            None => {
                self.store
                    .put_file(&content_key, &temp, &upload.content_type)
                    .await?;
                // A local store moved the file; a remote one leaves it for the
                // post-store hooks to read.
                (size, sha256, Some(temp))
            }
        };
        crash_point("after-content");

        let mut record = UploadRecord {
            id: id.clone(),
            client: client.name.clone(),
            filename,
            content_type: upload.content_type.clone(),
            size,
            sha256,
            created_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            metadata,
            skipped,
            derived: Vec::new(),
            pending: Vec::new(),
        };
        let permit = self.reserve_post_store(&plugins, &mut record);
        if let Err(err) = self.write_record(&record).await {
            // Without its record the content is unreachable: don't leak it.
            let _ = self.store.delete(&content_key).await;
            return Err(err);
        }
        let post_store_done = permit.map(|permit| {
            let (done, waiter) = oneshot::channel();
            permit.send(PostStoreJob {
                record: record.clone(),
                content,
                plugins: Arc::clone(&plugins),
                done,
                _temp: keep_temp,
            });
            waiter
        });
        tracing::info!(size = record.size, "upload stored");
        Ok(Ingested {
            record,
            received,
            post_store_done,
        })
    }

    /// Runs the processors in order on `content`; replacements chain.
    async fn process(
        &self,
        plugins: &PluginSet,
        upload: &mut UploadInfo,
        mut content: Arc<dyn ContentSource>,
    ) -> Result<Processed, UploadError> {
        let mut metadata = BTreeMap::new();
        let mut skipped = Vec::new();
        let mut replaced = None;
        for hooked in &plugins.processors {
            upload.metadata = metadata.clone().into_iter().collect();
            match self.run_plugin(hooked, upload, &content).await {
                Ok(HookOutput::Verdict(Verdict::Accept { metadata: added })) => {
                    metadata.extend(added)
                }
                Ok(HookOutput::Verdict(Verdict::Reject { reason })) => {
                    return Err(UploadError::Rejected {
                        plugin: hooked.plugin.name().into(),
                        reason,
                    });
                }
                Ok(HookOutput::Verdict(Verdict::Replace {
                    bytes,
                    content_type,
                    metadata: added,
                })) => {
                    metadata.extend(added);
                    upload.content_type = essence(&content_type);
                    content = Arc::new(bytes.clone());
                    replaced = Some(bytes);
                }
                Ok(HookOutput::Derived(_)) => {}
                Err(failure) => self.on_plugin_failure(hooked, failure, &mut skipped)?,
            }
        }
        Ok(Processed {
            metadata,
            skipped,
            content,
            replaced,
        })
    }

    /// Reserves a post-store queue slot and lists the extensions as pending,
    /// or, when the queue is full or closing, lists them as skipped. Never
    /// waits: a full queue must not slow uploads down.
    fn reserve_post_store(
        &self,
        plugins: &PluginSet,
        record: &mut UploadRecord,
    ) -> Option<mpsc::OwnedPermit<PostStoreJob>> {
        if plugins.extensions.is_empty() {
            return None;
        }
        let queue = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let permit = queue.and_then(|tx| tx.try_reserve_owned().ok());
        let names = plugins
            .extensions
            .iter()
            .map(|h| h.plugin.name().to_string());
        if permit.is_some() {
            record.pending = names.collect();
        } else {
            self.metrics.post_store_dropped();
            record.skipped.extend(names.map(|plugin| SkippedPlugin {
                plugin,
                hook: HookKind::Extension,
                reason: "post-store queue full or closing".into(),
                limit: None,
            }));
        }
        permit
    }

    /// Streams the body into `path`, enforcing `limit`; returns size and
    /// SHA-256.
    async fn receive<S, E>(
        &self,
        admission: &Admission,
        mut body: S,
        path: &Path,
        limit: u64,
    ) -> Result<(u64, String), UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut file = tokio::fs::File::create(path).await.map_err(internal)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = admission.body_read(body.next()).await? {
            let chunk = chunk.map_err(|e| UploadError::Body(e.to_string()))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(UploadError::TooLarge { limit });
            }
            self.metrics.bytes_in(chunk.len() as u64);
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(internal)?;
        }
        file.flush().await.map_err(internal)?;
        Ok((size, hex::encode(hasher.finalize())))
    }

    /// Invokes one plugin through its guard and records the outcome.
    async fn run_plugin(
        &self,
        hooked: &HookedPlugin,
        upload: &UploadInfo,
        content: &Arc<dyn ContentSource>,
    ) -> Result<HookOutput, PluginFailure> {
        let _slot = hooked.guard.admit().await.map_err(PluginFailure::Refused)?;
        let invocation = hooked.plugin.invoke(upload, Arc::clone(content)).await;
        self.metrics.invocation(hooked.plugin.name(), &invocation);
        hooked.guard.record(&invocation).await;
        invocation.outcome.map_err(PluginFailure::Invoke)
    }

    fn on_plugin_failure(
        &self,
        hooked: &HookedPlugin,
        failure: PluginFailure,
        skipped: &mut Vec<SkippedPlugin>,
    ) -> Result<(), UploadError> {
        let plugin = hooked.plugin.name().to_string();
        let reason = failure.reason();
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

    async fn write_record(&self, record: &UploadRecord) -> Result<(), UploadError> {
        let json = serde_json::to_vec(record).map_err(internal)?;
        self.store
            .put_bytes(&keys::record(&record.id), json.into(), "application/json")
            .await?;
        Ok(())
    }

    /// The record of upload `id`, if `client` owns it.
    pub async fn record(&self, client: &Client, id: &str) -> Result<UploadRecord, UploadError> {
        if !valid_id(id) {
            return Err(UploadError::NotFound);
        }
        let bytes = self.store.get_bytes(&keys::record(id)).await?;
        let record: UploadRecord = serde_json::from_slice(&bytes).map_err(internal)?;
        if record.client != client.name {
            return Err(UploadError::NotFound);
        }
        Ok(record)
    }

    /// Deletes upload `id` of `client`: a tombstone first while post-store
    /// work is pending (so an update racing with this delete undoes itself,
    /// see `finish_record`), then the record, so the upload disappears at
    /// once, then its objects.
    pub async fn delete(&self, client: &Client, id: &str) -> Result<(), UploadError> {
        let record = self.record(client, id).await?;
        if !record.pending.is_empty() {
            self.store
                .put_bytes(&keys::tombstone(id), Bytes::new(), "text/plain")
                .await?;
        }
        self.store.delete(&keys::record(id)).await?;
        self.store.delete(&keys::content(id)).await?;
        for derived in &record.derived {
            self.store.delete(&keys::derived(id, &derived.name)).await?;
        }
        Ok(())
    }

    #[tracing::instrument(name = "post_store", skip_all, fields(id = %job.record.id))]
    async fn post_store(&self, job: PostStoreJob) {
        let record = &job.record;
        let upload = UploadInfo {
            id: record.id.clone(),
            client: record.client.clone(),
            filename: record.filename.clone(),
            content_type: record.content_type.clone(),
            metadata: record.metadata.clone().into_iter().collect(),
        };
        let mut derived = Vec::new();
        let mut skipped = Vec::new();
        for hooked in &job.plugins.extensions {
            match self.run_plugin(hooked, &upload, &job.content).await {
                Ok(HookOutput::Derived(items)) => {
                    for item in items {
                        let key = keys::derived(&record.id, &item.name);
                        let size = item.bytes.len() as u64;
                        match self
                            .store
                            .put_bytes(&key, item.bytes, &item.content_type)
                            .await
                        {
                            Ok(()) => derived.push(DerivedRecord {
                                name: item.name,
                                content_type: item.content_type,
                                size,
                                plugin: hooked.plugin.name().into(),
                            }),
                            Err(err) => skipped.push(SkippedPlugin {
                                plugin: hooked.plugin.name().into(),
                                hook: HookKind::Extension,
                                reason: format!("storing {}: {err}", item.name),
                                limit: None,
                            }),
                        }
                    }
                }
                Ok(HookOutput::Verdict(_)) => {}
                Err(failure) => {
                    let reason = failure.reason();
                    tracing::warn!(plugin = hooked.plugin.name(), error = %reason, "post-store plugin failed");
                    skipped.push(SkippedPlugin {
                        plugin: hooked.plugin.name().into(),
                        hook: HookKind::Extension,
                        reason,
                        limit: failure.limit(),
                    });
                }
            }
        }
        let final_record = self.finish_record(record, derived, skipped).await;
        let _ = job.done.send(final_record);
    }

    /// Adds post-store results to the stored record. If the upload was
    /// deleted meanwhile, removes the artifacts instead.
    async fn finish_record(
        &self,
        record: &UploadRecord,
        derived: Vec<DerivedRecord>,
        skipped: Vec<SkippedPlugin>,
    ) -> UploadRecord {
        let current = match self.store.get_bytes(&keys::record(&record.id)).await {
            Ok(bytes) => serde_json::from_slice::<UploadRecord>(&bytes).ok(),
            Err(StorageError::NotFound(_)) => None,
            Err(err) => {
                tracing::error!(error = %format_args!("{:#}", anyhow::Error::new(err)), "cannot read record after post-store hooks");
                Some(record.clone())
            }
        };
        let Some(mut current) = current else {
            for item in &derived {
                let _ = self
                    .store
                    .delete(&keys::derived(&record.id, &item.name))
                    .await;
            }
            // Deleted before this update: no writer is left to race with.
            self.remove_tombstone(&record.id).await;
            return record.clone();
        };
        current.derived.extend(derived);
        current.skipped.extend(skipped);
        current.pending.clear();
        if let Err(err) = self.write_record(&current).await {
            tracing::error!(error = %format_args!("{:#}", anyhow::Error::new(err)), "cannot update record after post-store hooks");
        }
        // A delete writes its tombstone before removing the record: if it
        // removed the record before the write above, the tombstone is
        // visible now, and the write must not bring the upload back.
        match self.store.get_bytes(&keys::tombstone(&record.id)).await {
            Ok(_) => {
                self.remove_resurrected(&current).await;
                self.remove_tombstone(&record.id).await;
            }
            Err(StorageError::NotFound(_)) => {}
            Err(err) => {
                tracing::error!(error = %format_args!("{:#}", anyhow::Error::new(err)), "cannot check for a delete after post-store hooks")
            }
        }
        current
    }

    /// The last writer of a deleted upload removes its tombstone.
    async fn remove_tombstone(&self, id: &str) {
        if let Err(err) = self.store.delete(&keys::tombstone(id)).await {
            tracing::warn!(id, error = %format_args!("{:#}", anyhow::Error::new(err)), "cannot remove a tombstone");
        }
    }

    /// Undoes a record update that landed after its upload was deleted.
    async fn remove_resurrected(&self, record: &UploadRecord) {
        let mut keys_to_remove = vec![keys::record(&record.id), keys::content(&record.id)];
        keys_to_remove.extend(
            record
                .derived
                .iter()
                .map(|d| keys::derived(&record.id, &d.name)),
        );
        for key in keys_to_remove {
            if let Err(err) = self.store.delete(&key).await {
                tracing::error!(key, error = %format_args!("{:#}", anyhow::Error::new(err)), "cannot remove what a racing delete removed");
            }
        }
    }
}

/// Upload ids are 32 lowercase hex characters.
pub fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A file name safe to store and echo back: the last path component, no
/// control characters, at most 255 bytes.
pub fn sanitize_filename(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut clean: String = last.chars().filter(|c| !c.is_control()).collect();
    while clean.len() > 255 {
        clean.pop();
    }
    let clean = clean.trim().to_string();
    if clean.is_empty() || clean == "." || clean == ".." {
        "upload".into()
    } else {
        clean
    }
}

/// Aborts the process here when `AIRLOCK_TEST_FAULT` names this point: how
/// tests crash the service between two writes.
fn crash_point(name: &str) {
    static FAULT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let fault = FAULT.get_or_init(|| std::env::var("AIRLOCK_TEST_FAULT").ok());
    if fault.as_deref() == Some(name) {
        tracing::error!(point = name, "AIRLOCK_TEST_FAULT: crashing on purpose");
        // Like a SIGKILL: no cleanup runs, and no core file is left.
        if let Err(err) = rlimit::setrlimit(rlimit::Resource::CORE, 0, 0) {
            tracing::warn!(error = %err, "cannot turn core files off");
        }
        std::process::abort();
    }
}

async fn clean_temp_dir(dir: &Path) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let mut entries = tokio::fs::read_dir(dir).await?;
    let mut removed = 0;
    while let Some(entry) = entries.next_entry().await? {
        if entry.file_type().await?.is_file() {
            tokio::fs::remove_file(entry.path()).await?;
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(removed, dir = %dir.display(), "removed temp files left by an earlier run");
    }
    Ok(())
}

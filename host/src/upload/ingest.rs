//! Taking an upload in: the body streamed to a temp file within the
//! request's limits, the processors, the durable commit, the record; and a
//! request of several files stored all or none.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use super::error::{BoxError, internal};
use super::names::sanitize_filename;
use super::spool::{Spool, Spooled};
use super::{Admission, PluginSet, SkippedPlugin, UploadError, UploadRecord, UploadService, keys};
use crate::auth::Client;
use crate::runtime::{ChunkedContent, ContentSource, FileContent, UploadInfo, Verdict};
use crate::text::chain;
use crate::text::essence;

/// An accepted upload, and a way to wait for its post-store hooks.
pub struct Ingested {
    /// The record as committed.
    pub record: UploadRecord,
    /// Bytes received from the client (before any replacement).
    pub received: u64,
}

/// An upload whose bytes have all arrived.
pub(super) struct Arrival {
    pub(super) id: String,
    /// Already sanitized.
    pub(super) filename: String,
    /// Its essence.
    pub(super) content_type: String,
    pub(super) size: u64,
    pub(super) sha256: String,
    /// The bytes, for the processors.
    pub(super) content: Arc<dyn ContentSource>,
    pub(super) place: Place,
}

/// Where the bytes of an [`Arrival`] are.
pub(super) enum Place {
    /// In memory (a small body, as it arrived), written to storage on
    /// commit.
    Memory(Vec<Bytes>),
    /// In a temp file of this node, moved or copied to storage on commit.
    Temp(tempfile::TempPath),
    /// At the upload's content key already (removed if the upload fails).
    Stored,
}

/// What the processors made of an upload (its metadata and content type
/// are in the upload itself).
struct Processed {
    skipped: Vec<SkippedPlugin>,
    replaced: Option<Bytes>,
}

impl UploadService {
    /// Runs one file of an admitted request through the pipeline.
    #[tracing::instrument(name = "upload", skip_all, fields(client = %client.name, id))]
    async fn ingest<S, E>(
        &self,
        admission: &Admission,
        client: &Client,
        filename: &str,
        content_type: &str,
        body: S,
    ) -> Result<Ingested, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<BoxError>,
    {
        let content_type = essence(content_type);
        if !client.allows(&content_type) {
            return Err(UploadError::UnsupportedType(content_type));
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        tracing::Span::current().record("id", id.as_str());
        let (size, sha256, spooled) = self
            .receive(
                admission,
                body,
                self.tmp_dir.join(format!("{id}.part")),
                client.max_body_bytes,
            )
            .await?;
        let (content, place): (Arc<dyn ContentSource>, _) = match spooled {
            Spooled::Memory(chunks) => (
                Arc::new(ChunkedContent::new(chunks.clone())),
                Place::Memory(chunks),
            ),
            Spooled::File(temp) => (
                Arc::new(FileContent::open(&temp).map_err(internal("opening the received file"))?),
                Place::Temp(temp),
            ),
        };
        self.accept(
            client,
            Arrival {
                id,
                filename: sanitize_filename(filename),
                content_type,
                size,
                sha256,
                content,
                place,
            },
        )
        .await
    }

    /// Runs an upload whose bytes have all arrived through the processors,
    /// stores it and writes its record: the pipeline past receiving, the
    /// same for every way in.
    pub(super) async fn accept(
        &self,
        client: &Client,
        arrival: Arrival,
    ) -> Result<Ingested, UploadError> {
        let Arrival {
            id,
            filename,
            content_type,
            size,
            sha256,
            content: file,
            place,
        } = arrival;
        let content_key = keys::content(&id);
        let stored = matches!(place, Place::Stored);
        let received = size;
        let processed = async {
            let slot = self
                .in_flight
                .acquire()
                .await
                .map_err(internal("waiting for a processing slot"))?;
            // A processor's slot is waited for up to the upload's own
            // deadline (counted from here: its bytes have all arrived).
            let until = tokio::time::Instant::now() + self.body_timeouts.deadline;
            let plugins = self.plugins();
            let mut upload = UploadInfo {
                id: id.clone(),
                client: client.name.clone(),
                filename,
                content_type,
                metadata: BTreeMap::new(),
                sha256: sha256.clone(),
            };
            let processed = self.process(&plugins, &mut upload, file, until).await?;
            Ok::<_, UploadError>((slot, plugins, upload, processed))
        }
        .await;
        let (_slot, plugins, upload, processed) = match processed {
            Ok(done) => done,
            Err(err) => {
                if stored {
                    self.forget_content(&content_key).await;
                }
                return Err(err);
            }
        };
        let Processed { skipped, replaced } = processed;

        // The post-store job reads the content back from the store.
        let (size, sha256) = match (replaced, place) {
            (Some(bytes), _) => {
                // Hashed when the processor replaced them.
                let digest = upload.sha256.clone();
                let len = bytes.len() as u64;
                self.store
                    .put_bytes(&content_key, bytes, &upload.content_type)
                    .await?;
                (len, digest)
            }
            (None, Place::Memory(chunks)) => {
                self.store
                    .put_chunks(&content_key, chunks, &upload.content_type)
                    .await?;
                (size, sha256)
            }
            (None, Place::Temp(temp)) => {
                self.store
                    .put_file(&content_key, &temp, &upload.content_type)
                    .await?;
                (size, sha256)
            }
            (None, Place::Stored) => (size, sha256),
        };
        crash_point("after-content");

        let mut record = UploadRecord {
            upload,
            received_size: (size != received).then_some(received),
            size,
            sha256,
            created_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            skipped,
            derived: Vec::new(),
            pending: Vec::new(),
        };
        // The job is queued before the record is written: a record that
        // lists pending plugins always has a job to run them.
        if !plugins.extensions.is_empty() {
            record.pending = plugins
                .extensions
                .iter()
                .map(|h| h.plugin.name().to_string())
                .collect();
            if let Err(err) = self.queue_post_store(&record).await {
                self.forget_content(&content_key).await;
                return Err(err);
            }
        }
        if let Err(err) = self.write_record(&record).await {
            // Without its record the content is unreachable: don't leak it.
            // (Its job finds no record and is dropped.)
            self.forget_content(&content_key).await;
            return Err(err);
        }
        tracing::info!(size = record.size, "upload stored");
        Ok(Ingested { record, received })
    }

    /// Removes content no record will own (the orphan sweep would, later).
    pub(super) async fn forget_content(&self, key: &str) {
        if let Err(err) = self.store.delete(key).await {
            tracing::warn!(key, error = %chain(&err), "cannot remove content of a failed upload; the orphan sweep will");
        }
    }

    /// Runs the processors in order on `content`; replacements chain.
    async fn process(
        &self,
        plugins: &PluginSet,
        upload: &mut UploadInfo,
        mut content: Arc<dyn ContentSource>,
        until: tokio::time::Instant,
    ) -> Result<Processed, UploadError> {
        let mut skipped = Vec::new();
        let mut replaced = None;
        for hooked in &plugins.processors {
            let verdict = self
                .run_plugin(hooked, until, async |plugin| {
                    plugin.process(upload, Arc::clone(&content)).await
                })
                .await;
            match verdict {
                Ok(Verdict::Accept { metadata }) => upload.metadata.extend(metadata),
                Ok(Verdict::Reject { reason }) => {
                    return Err(UploadError::Rejected {
                        plugin: hooked.plugin.name().into(),
                        reason,
                    });
                }
                Ok(Verdict::Replace {
                    bytes,
                    content_type,
                    metadata,
                }) => {
                    upload.metadata.extend(metadata);
                    upload.content_type = essence(&content_type);
                    // Later processors (and the record) get the new bytes'
                    // digest.
                    upload.sha256 = hex::encode(Sha256::digest(&bytes));
                    content = Arc::new(bytes.clone());
                    replaced = Some(bytes);
                }
                Err(failure) => self.on_plugin_failure(hooked, failure, &mut skipped)?,
            }
        }
        Ok(Processed { skipped, replaced })
    }

    /// Streams the body into `path`, enforcing `limit`; returns size and
    /// SHA-256.
    async fn receive<S, E>(
        &self,
        admission: &Admission,
        mut body: S,
        path: PathBuf,
        limit: u64,
    ) -> Result<(u64, String, Spooled), UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<BoxError>,
    {
        let mut spool = Spool::new(path);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = admission.body_read(body.next()).await? {
            let chunk = chunk.map_err(|e| UploadError::Body(e.into()))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(UploadError::TooLarge { limit });
            }
            self.metrics.bytes_in(chunk.len() as u64);
            hasher.update(&chunk);
            spool
                .push(chunk)
                .await
                .map_err(internal("writing a temp file"))?;
        }
        let spooled = spool
            .finish()
            .await
            .map_err(internal("writing a temp file"))?;
        Ok((size, hex::encode(hasher.finalize()), spooled))
    }
}

/// One upload request: one or more files, stored all or none. It holds the
/// request's admission (the client's cap, the body's time limits) and what
/// is left of the client's body limit for the files still to come.
pub struct Batch<'a> {
    service: &'a UploadService,
    admission: Admission,
    client: Client,
    remaining: u64,
    stored: Vec<Ingested>,
}

impl UploadService {
    /// Admits one upload request of `client`, or refuses it when the client
    /// has its share open already.
    pub fn batch(&self, client: &Client) -> Result<Batch<'_>, UploadError> {
        Ok(Batch {
            service: self,
            admission: self.open.admit(client, self.body_timeouts)?,
            client: client.clone(),
            remaining: client.max_body_bytes,
            stored: Vec::new(),
        })
    }
}

impl Batch<'_> {
    /// Waits for `read` (more of the request body) within the request's
    /// body timeouts.
    pub async fn body_read<F: Future>(&self, read: F) -> Result<F::Output, UploadError> {
        self.admission.body_read(read).await
    }

    /// Stores one file of the request. If it fails, the files stored before
    /// it are removed too: a client never learnt their ids.
    pub async fn add<S, E>(
        &mut self,
        filename: &str,
        content_type: &str,
        body: S,
    ) -> Result<(), UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<BoxError>,
    {
        let mut limits = self.client.clone();
        limits.max_body_bytes = self.remaining;
        let result = self
            .service
            .ingest(&self.admission, &limits, filename, content_type, body)
            .await;
        match result {
            Ok(ingested) => {
                self.remaining = self.remaining.saturating_sub(ingested.received);
                self.stored.push(ingested);
                Ok(())
            }
            Err(err) => {
                self.abort().await;
                Err(err)
            }
        }
    }

    /// Removes every file stored so far: the request failed part-way.
    pub async fn abort(&mut self) {
        for ingested in self.stored.drain(..) {
            let id = &ingested.record.upload.id;
            if let Err(err) = self.service.delete(&self.client, id).await {
                tracing::error!(id, error = %chain(&err), "cannot roll back a file of a failed request");
            }
        }
    }

    /// The stored files, in request order.
    pub fn finish(self) -> Vec<Ingested> {
        self.stored
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

pub(super) async fn clean_temp_dir(dir: &Path) -> std::io::Result<()> {
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

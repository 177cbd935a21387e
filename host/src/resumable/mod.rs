//! Resumable uploads (the tus 1.0 protocol's model, without its HTTP):
//! an upload is created with a declared (or deferred) length, its bytes
//! arrive in any number of appends, each resumable where the last one
//! stopped, on any node, and when the last byte is in it goes through the
//! same pipeline as a one-shot upload, under the same id.
//!
//! Bytes are staged by [`Staging`] (local disk or S3); appends to one
//! upload are serialized by a [`Locks`] lock (Redis across nodes, or in
//! process). An upload not written to for the expiration period is
//! removed by [`Resumable::sweep_expired`].

mod append;
mod checksum;
mod concat;
mod descriptor;
mod digests;
mod error;
mod feed;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use sha2::{Digest, Sha256};

pub use self::append::{Patch, Patched};
pub use self::checksum::{ALGORITHMS, Checksum};
pub use self::descriptor::{Concat, Descriptor, Metadata};
use self::digests::Digests;
pub use self::error::TusError;
use crate::auth::Client;
use crate::lock::{Lease, Locks};
use crate::metrics::Metrics;
use crate::storage::{Staged, Staging, StorageError};
use crate::upload::{Ingested, StoredUpload, UploadRecord, UploadService, keys, valid_id};

/// Limits of resumable uploads.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// An unfinished upload not written to for this long is removed.
    pub expiration: Duration,
    /// How long a request waits for another one writing to the same upload.
    pub lock_wait: Duration,
    /// The largest upload (`Tus-Max-Size`); clients' own limits apply too.
    pub max_size: u64,
}

/// A new upload.
#[derive(Debug, Clone)]
pub struct Creation {
    /// Its length; `None` to declare it later (`Upload-Defer-Length`).
    pub length: Option<u64>,
    /// `Upload-Metadata`, as sent.
    pub metadata: Option<String>,
    /// Its place in a concatenation.
    pub concat: Concat,
}

/// A created upload.
pub struct Created {
    /// Its id (also the id of its record once finished).
    pub id: String,
    /// When it expires unless written to.
    pub expires: Option<SystemTime>,
    /// The pipeline's result, for a concatenation (finished at once).
    pub finished: Option<Ingested>,
}

/// Where an upload stands.
pub enum Status {
    /// Bytes still to come.
    Unfinished {
        /// What it is.
        descriptor: Descriptor,
        /// Bytes staged.
        offset: u64,
        /// When it expires unless written to.
        expires: SystemTime,
    },
    /// Through the pipeline: the record.
    Finished(Box<UploadRecord>),
}

/// The resumable upload service, shared by every request.
pub struct Resumable {
    staging: Arc<dyn Staging>,
    locks: Locks,
    service: Arc<UploadService>,
    metrics: Arc<Metrics>,
    settings: Settings,
    digests: Digests,
}

impl Resumable {
    /// Uploads staged in `staging`, serialized by `locks`, finished by
    /// `service`.
    pub fn new(
        staging: Arc<dyn Staging>,
        locks: Locks,
        service: Arc<UploadService>,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        Self {
            staging,
            locks,
            service,
            metrics,
            settings,
            digests: Digests::default(),
        }
    }

    /// The limits.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Creates an upload for `client` (and, for a concatenation, finishes
    /// it from its parts).
    pub async fn create(&self, client: &Client, creation: Creation) -> Result<Created, TusError> {
        let metadata = creation
            .metadata
            .as_deref()
            .map(Metadata::parse)
            .transpose()?
            .unwrap_or_default();
        let descriptor = Descriptor {
            client: client.name.clone(),
            length: creation.length,
            filename: metadata.text("filename").unwrap_or("upload").to_string(),
            content_type: metadata
                .text("filetype")
                .filter(|t| !t.is_empty())
                .unwrap_or("application/octet-stream")
                .to_string(),
            metadata: creation.metadata,
            concat: creation.concat,
            created_at: unix_now(),
        };
        if let Some(length) = descriptor.length {
            self.check_length(client, length)?;
        }
        if descriptor.concat != Concat::Partial {
            let content_type = crate::text::essence(&descriptor.content_type);
            if !client.allows(&content_type) {
                return Err(crate::upload::UploadError::UnsupportedType(content_type).into());
            }
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        if let Concat::Final(parts) = &descriptor.concat {
            let parts = parts.clone();
            return self.concatenate(client, id, descriptor, &parts).await;
        }
        let target = (descriptor.concat == Concat::None).then(|| keys::content(&id));
        self.staging
            .create(&id, descriptor.to_bytes()?, target.as_deref())
            .await?;
        self.metrics.resumable("created");
        tracing::info!(id, client = %client.name, length = ?descriptor.length, "resumable upload created");
        if descriptor.length == Some(0) && descriptor.concat == Concat::None {
            // Whole already: no PATCH will come (clients send none for an
            // empty file).
            let _lease = self.lock(&id).await?;
            let ingested = self
                .finish(client, &id, &descriptor, 0, Some(Sha256::new()))
                .await?;
            return Ok(Created {
                id,
                expires: None,
                finished: Some(ingested),
            });
        }
        Ok(Created {
            expires: Some(SystemTime::now() + self.settings.expiration),
            id,
            finished: None,
        })
    }

    /// Where upload `id` of `client` stands. One whose bytes all arrived
    /// but that was not finished (its finish failed) is finished now: the
    /// client asking is about to take its full offset for done.
    pub async fn status(&self, client: &Client, id: &str) -> Result<Status, TusError> {
        match self.load(client, id).await? {
            Some((descriptor, staged))
                if descriptor.concat == Concat::None
                    && descriptor.length == Some(staged.offset) =>
            {
                let _lease = self.lock(id).await?;
                match self.load(client, id).await? {
                    Some((descriptor, staged)) => {
                        let digest = self.digests.at(id, staged.offset);
                        let ingested = self
                            .finish(client, id, &descriptor, staged.offset, digest)
                            .await?;
                        Ok(Status::Finished(Box::new(ingested.record)))
                    }
                    None => Ok(Status::Finished(Box::new(
                        self.service.record(client, id).await?,
                    ))),
                }
            }
            Some((descriptor, staged)) => {
                if staged.offset > 0 {
                    self.metrics.resumable("resumed");
                }
                Ok(Status::Unfinished {
                    descriptor,
                    offset: staged.offset,
                    expires: staged.modified + self.settings.expiration,
                })
            }
            None => Ok(Status::Finished(Box::new(
                self.service.record(client, id).await?,
            ))),
        }
    }

    /// Terminates upload `id` of `client`: an unfinished one and its bytes
    /// go; a finished one is deleted like any upload.
    pub async fn terminate(&self, client: &Client, id: &str) -> Result<(), TusError> {
        let _lease = self.lock(id).await?;
        match self.load(client, id).await? {
            Some(_) => {
                self.staging.remove(id).await?;
                self.digests.forget(id);
                self.metrics.resumable("terminated");
                tracing::info!(id, "resumable upload terminated");
                Ok(())
            }
            None => Ok(self.service.delete(client, id).await?),
        }
    }

    /// Removes every unfinished upload not written to for the expiration
    /// period, with its staged bytes; returns how many. Uploads being
    /// written to (locked) are left for the next round.
    pub async fn sweep_expired(&self) -> Result<u64, TusError> {
        let cutoff = SystemTime::now()
            .checked_sub(self.settings.expiration)
            .unwrap_or(UNIX_EPOCH);
        let mut removed = 0;
        let mut last = String::new();
        let mut pages = self.staging.list();
        while let Some(page) = pages.next().await {
            for listed in page? {
                if listed.modified > cutoff || listed.key == last {
                    continue;
                }
                last.clone_from(&listed.key);
                let Ok(_lease) = self
                    .locks
                    .acquire(&lock_name(&listed.key), Duration::ZERO)
                    .await
                else {
                    continue;
                };
                match self.staging.load(&listed.key).await {
                    Ok(staged) if staged.modified <= cutoff => {}
                    Ok(_) | Err(StorageError::NotFound(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
                self.staging.remove(&listed.key).await?;
                self.digests.forget(&listed.key);
                self.metrics.resumable("expired");
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed expired resumable uploads");
        }
        Ok(removed)
    }

    /// Checks a declared length against the limits.
    fn check_length(&self, client: &Client, length: u64) -> Result<(), TusError> {
        let limit = client.max_body_bytes.min(self.settings.max_size);
        if length > limit {
            return Err(crate::upload::UploadError::TooLarge { limit }.into());
        }
        Ok(())
    }

    /// Takes the lock of upload `id`.
    async fn lock(&self, id: &str) -> Result<Lease, TusError> {
        if !valid_id(id) {
            return Err(TusError::NotFound);
        }
        Ok(self
            .locks
            .acquire(&lock_name(id), self.settings.lock_wait)
            .await?)
    }

    /// The staged upload `id` of `client`; `None` if it is finished (or
    /// never was one: the caller looks for a record).
    async fn load(
        &self,
        client: &Client,
        id: &str,
    ) -> Result<Option<(Descriptor, Staged)>, TusError> {
        if !valid_id(id) {
            return Err(TusError::NotFound);
        }
        let staged = match self.staging.load(id).await {
            Ok(staged) => staged,
            Err(StorageError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let descriptor = Descriptor::from_bytes(&staged.info)?;
        if descriptor.client != client.name {
            return Err(TusError::NotFound);
        }
        if staged.modified + self.settings.expiration < SystemTime::now() {
            // Removed by the sweep, which takes the upload's lock first.
            return Err(TusError::Expired);
        }
        Ok(Some((descriptor, staged)))
    }

    /// Runs a whole upload through the pipeline: its bytes become its
    /// content object, then processors, record and post-store queue. Its
    /// staged state goes whatever the outcome.
    async fn finish(
        &self,
        client: &Client,
        id: &str,
        descriptor: &Descriptor,
        length: u64,
        digest: Option<Sha256>,
    ) -> Result<Ingested, TusError> {
        self.staging.complete(id).await?;
        let sha256 = match digest {
            Some(digest) => hex::encode(digest.finalize()),
            None => self.hash_stored(id).await?,
        };
        let ingested = self
            .service
            .ingest_stored(
                client,
                StoredUpload {
                    id: id.to_string(),
                    filename: descriptor.filename.clone(),
                    content_type: descriptor.content_type.clone(),
                    size: length,
                    sha256,
                },
            )
            .await;
        if let Err(e) = self.staging.remove(id).await {
            tracing::warn!(id, error = %crate::text::chain(&e), "cannot remove a finished upload's staging; it expires");
        }
        self.digests.forget(id);
        let ingested = ingested?;
        self.metrics.resumable("finished");
        Ok(ingested)
    }

    /// SHA-256 of a completed upload's content, read from storage (its
    /// running digest was lost: appends came through another node).
    async fn hash_stored(&self, id: &str) -> Result<String, TusError> {
        let object = self.service.store().get(&keys::content(id), None).await?;
        let mut body = object.body;
        let mut digest = Sha256::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                TusError::Storage(StorageError::unavailable("reading a finished upload", e))
            })?;
            digest.update(&chunk);
        }
        Ok(hex::encode(digest.finalize()))
    }
}

/// The lock of upload `id`.
fn lock_name(id: &str) -> String {
    format!("tus:{id}")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

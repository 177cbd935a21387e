//! The concatenation extension: a final upload made of finished partial
//! uploads (what tus-js-client's `parallelUploads` sends), copied in order
//! into one staged upload and finished through the pipeline at once.

use std::sync::Mutex;
use std::time::Duration;

use sha2::Sha256;

use super::descriptor::{Concat, Descriptor};
use super::feed::{Stop, Tally, feed};
use super::{Created, Resumable, TusError, lock_name};
use crate::auth::Client;
use crate::storage::StorageError;
use crate::upload::{UploadError, keys, valid_id};

/// Partial uploads one final upload may name.
pub const MAX_PARTS: usize = 1024;

impl Resumable {
    /// Creates upload `id` as the concatenation of `parts` and finishes it.
    pub(super) async fn concatenate(
        &self,
        client: &Client,
        id: String,
        mut descriptor: Descriptor,
        parts: &[String],
    ) -> Result<Created, TusError> {
        if parts.is_empty() || parts.len() > MAX_PARTS {
            return Err(TusError::bad_request(format!(
                "Upload-Concat: final needs 1 to {MAX_PARTS} partial uploads"
            )));
        }
        if let Some(bad) = parts.iter().find(|part| !valid_id(part)) {
            return Err(TusError::bad_request(format!(
                "Upload-Concat: {bad} is not an upload of this server"
            )));
        }
        let _leases = {
            let mut leases = Vec::with_capacity(parts.len());
            for part in parts {
                leases.push(self.lock(part).await?);
            }
            leases
        };
        let mut length = 0u64;
        for part in parts {
            let unusable = |why: &str| {
                TusError::bad_request(format!("Upload-Concat: partial upload {part} {why}"))
            };
            let Some((partial, staged)) = self.load(client, part).await.map_err(|e| match e {
                TusError::NotFound | TusError::Expired => unusable("does not exist"),
                other => other,
            })?
            else {
                return Err(unusable("does not exist"));
            };
            if partial.concat != Concat::Partial {
                return Err(unusable("is not a partial upload"));
            }
            if partial.length != Some(staged.offset) || !staged.completed {
                return Err(unusable("is not finished"));
            }
            length = length
                .checked_add(staged.offset)
                .ok_or_else(|| unusable("is too large"))?;
        }
        self.check_length(client, length)?;
        descriptor.length = Some(length);
        self.staging
            .create(&id, descriptor.to_bytes()?, Some(&keys::content(&id)))
            .await?;
        self.metrics.resumable("created");
        let _lease = self.locks.acquire(&lock_name(&id), Duration::ZERO).await?;
        let digest = match self.copy_parts(&id, parts, length).await {
            Ok(digest) => digest,
            Err(err) => {
                if let Err(e) = self.staging.remove(&id).await {
                    tracing::warn!(id, error = %crate::text::chain(&e), "cannot remove a failed concatenation; it expires");
                }
                return Err(err);
            }
        };
        let ingested = self
            .finish(client, &id, &descriptor, length, Some(digest))
            .await?;
        // The parts served their purpose (the protocol lets them go).
        for part in parts {
            if let Err(e) = self.staging.remove(part).await {
                tracing::warn!(part, error = %crate::text::chain(&e), "cannot remove a concatenated part; it expires");
            }
        }
        Ok(Created {
            id,
            expires: None,
            finished: Some(ingested),
        })
    }

    /// Appends each part's bytes to `id`, in order; their SHA-256.
    async fn copy_parts(
        &self,
        id: &str,
        parts: &[String],
        length: u64,
    ) -> Result<Sha256, TusError> {
        let mut offset = 0;
        let mut digest = Sha256::default();
        for part in parts {
            let bytes = self.staging.read(part).await?;
            let tally = Mutex::new(Tally {
                sha256: Some(digest),
                ..Tally::default()
            });
            let room = length - offset;
            let appended = self
                .staging
                .append(
                    id,
                    offset,
                    feed(
                        bytes,
                        None,
                        room,
                        move || TusError::PastLength { length },
                        &tally,
                    ),
                )
                .await?;
            let tally = tally
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(stop) = tally.stop {
                appended.discard().await;
                return Err(match stop {
                    Stop::TooMuch(err) => err,
                    Stop::Client(TusError::Upload(UploadError::Body(source))) => {
                        TusError::Storage(StorageError::Unavailable {
                            what: format!("reading partial upload {part}"),
                            source: Some(source),
                        })
                    }
                    Stop::Client(err) => err,
                });
            }
            offset = appended.keep().await?;
            digest = tally.sha256.unwrap_or_default();
        }
        Ok(digest)
    }
}

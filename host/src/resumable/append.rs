//! Appending to an upload (a PATCH): under the upload's lock, at the offset
//! it stands at, streamed to staging; the bytes are kept unless a checksum
//! says otherwise, and the last byte finishes the upload.

use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;
use futures::Stream;

use super::checksum::Checksum;
use super::descriptor::Concat;
use super::feed::{Stop, Tally, feed};
use super::{Resumable, TusError};
use crate::auth::Client;
use crate::upload::{BoxError, Ingested, UploadError};

/// One append.
#[derive(Debug, Clone, Default)]
pub struct Patch {
    /// Where the client thinks the upload stands (`Upload-Offset`).
    pub offset: u64,
    /// The upload's length, declared now (`Upload-Length` after
    /// `Upload-Defer-Length`).
    pub length: Option<u64>,
    /// The body's digest (`Upload-Checksum`).
    pub checksum: Option<Checksum>,
}

/// What an append did.
pub struct Patched {
    /// Where the upload stands now.
    pub offset: u64,
    /// When it expires unless written to; `None` once finished.
    pub expires: Option<SystemTime>,
    /// The pipeline's result, if this append finished the upload.
    pub finished: Option<Ingested>,
}

impl Resumable {
    /// Appends `body` to upload `id` of `client`.
    pub async fn append<S, E>(
        &self,
        client: &Client,
        id: &str,
        patch: Patch,
        body: S,
    ) -> Result<Patched, TusError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: Into<BoxError>,
    {
        let admission = self.service.admit(client)?;
        let lease = self.lock(id).await?;
        let Some((mut descriptor, staged)) = self.load(client, id).await? else {
            // Finished: not one byte more (its record says so).
            self.service.record(client, id).await?;
            return Err(TusError::Finished);
        };
        if matches!(descriptor.concat, Concat::Final(_)) {
            return Err(TusError::FinalUpload);
        }
        if patch.offset != staged.offset {
            return Err(TusError::OffsetMismatch {
                expected: staged.offset,
                given: patch.offset,
            });
        }
        match (descriptor.length, patch.length) {
            (None, Some(length)) => {
                if length < staged.offset {
                    return Err(TusError::bad_request(format!(
                        "Upload-Length {length} is less than the {} bytes already received",
                        staged.offset
                    )));
                }
                self.check_length(client, length)?;
                descriptor.length = Some(length);
                self.staging.set_info(id, descriptor.to_bytes()?).await?;
            }
            (Some(declared), Some(length)) if declared != length => {
                return Err(TusError::bad_request(format!(
                    "Upload-Length is {declared} already; it cannot change"
                )));
            }
            _ => {}
        }
        if staged.completed {
            if descriptor.concat == Concat::Partial {
                return Err(TusError::Finished);
            }
            // A finish that failed half way (the bytes are whole): again.
            return self
                .finish_appended(client, id, &descriptor, staged.offset, None)
                .await;
        }

        let limit = client.max_body_bytes.min(self.settings.max_size);
        let room = descriptor
            .length
            .unwrap_or(limit)
            .saturating_sub(staged.offset);
        let too_much = move || match descriptor.length {
            Some(length) => TusError::PastLength { length },
            None => UploadError::TooLarge { limit }.into(),
        };
        let tally = Mutex::new(Tally {
            sha256: self.digests.at(id, staged.offset),
            checksum: patch.checksum.as_ref().map(Checksum::hasher),
            ..Tally::default()
        });
        let appended = self
            .staging
            .append(
                id,
                staged.offset,
                feed(body, Some(&admission), room, too_much, &tally),
            )
            .await?;
        let Tally {
            received,
            sha256,
            checksum,
            stop,
        } = tally
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // What the bytes are worth.
        let checksum_ok = match (&patch.checksum, checksum) {
            (Some(expected), Some(hasher)) => expected.matches(hasher),
            _ => true,
        };
        let verdict = match stop {
            Some(Stop::TooMuch(err)) => Err(err),
            // Part of a body cannot be checked against the whole's digest.
            Some(Stop::Client(err)) if patch.checksum.is_some() => Err(err),
            Some(Stop::Client(err)) => Ok(Some(err)),
            None if !checksum_ok => {
                self.metrics.resumable("checksum_failed");
                Err(TusError::ChecksumMismatch)
            }
            None => Ok(None),
        };
        let interrupted = match verdict {
            Err(err) => {
                appended.discard().await;
                return Err(err);
            }
            Ok(interrupted) => interrupted,
        };
        if !lease.held() {
            // Another request may own the upload now.
            appended.discard().await;
            return Err(TusError::Locked);
        }
        let whole = descriptor.length == Some(staged.offset + received);
        let completes = whole && descriptor.concat == Concat::None;
        let offset = if completes {
            appended.keep_to_complete().await?
        } else {
            appended.keep().await?
        };
        self.metrics.resumable_bytes(received);
        self.service.count_received(received);
        if let Some(sha256) = &sha256 {
            self.digests.put(id, offset, sha256.clone());
        }
        if let Some(err) = interrupted
            && !whole
        {
            // The bytes that came are kept; the client resumes from here.
            tracing::info!(id, offset, "resumable upload interrupted");
            return Err(err);
        }
        // Whole, even if the client went away after its last byte: a client
        // that resumes finds the upload finished (not stuck at its length,
        // which it would take for done).
        if descriptor.length != Some(offset) {
            return Ok(Patched {
                offset,
                expires: Some(SystemTime::now() + self.settings.expiration),
                finished: None,
            });
        }
        if descriptor.concat == Concat::Partial {
            // Whole, and kept for the concatenation that names it.
            self.staging.complete(id).await?;
            return Ok(Patched {
                offset,
                expires: Some(SystemTime::now() + self.settings.expiration),
                finished: None,
            });
        }
        self.finish_appended(client, id, &descriptor, offset, sha256)
            .await
    }

    async fn finish_appended(
        &self,
        client: &Client,
        id: &str,
        descriptor: &super::Descriptor,
        offset: u64,
        sha256: Option<sha2::Sha256>,
    ) -> Result<Patched, TusError> {
        let ingested = self.finish(client, id, descriptor, offset, sha256).await?;
        Ok(Patched {
            offset,
            expires: None,
            finished: Some(ingested),
        })
    }
}

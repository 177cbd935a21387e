//! One append to an S3-staged upload: the parts it uploaded, the bytes past
//! them, and how it is kept (a new tail, then the state) or discarded.

use async_trait::async_trait;
use bytes::Bytes;

use super::{Part, S3Staging, State, Tail, key};
use crate::storage::staging::Appended;
use crate::storage::{BlobStore, StorageError};

/// An append: parts already uploaded, the bytes past them in memory (less
/// than a part), and the state it started from.
pub(super) struct S3Appended {
    pub(super) staging: S3Staging,
    pub(super) id: String,
    pub(super) state: State,
    pub(super) upload_id: Option<String>,
    /// Whether this append started the multipart upload (so a discard
    /// aborts it).
    pub(super) started_upload: bool,
    pub(super) new_parts: Vec<Part>,
    pub(super) leftover: Bytes,
    pub(super) len: u64,
}

impl S3Appended {
    /// Uploads `bytes` as the next part, starting the multipart upload if
    /// there is none yet.
    pub(super) async fn upload(&mut self, bytes: Bytes) -> Result<(), StorageError> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = self.staging.start_multipart(&self.state.target).await?;
                self.upload_id = Some(id.clone());
                self.started_upload = true;
                id
            }
        };
        let number =
            i32::try_from(self.state.parts.len() + self.new_parts.len() + 1).map_err(|_| {
                StorageError::unavailable_bare(format!("s3: too many parts for {}", self.id))
            })?;
        let part = self
            .staging
            .upload_part(&self.state.target, &upload_id, number, bytes)
            .await?;
        self.new_parts.push(part);
        Ok(())
    }
}

#[async_trait]
impl Appended for S3Appended {
    fn len(&self) -> u64 {
        self.len
    }

    async fn keep(self: Box<Self>) -> Result<u64, StorageError> {
        let (staging, target, started) = (
            self.staging.clone(),
            self.state.target.clone(),
            self.started_upload,
        );
        let upload_id = self.upload_id.clone();
        let kept = self.commit().await;
        if kept.is_err()
            && started
            && let Some(upload_id) = upload_id
        {
            // No state names the multipart upload this append started.
            staging.abort(&target, &upload_id).await;
        }
        kept
    }

    async fn discard(self: Box<Self>) {
        if self.started_upload
            && let Some(upload_id) = &self.upload_id
        {
            self.staging.abort(&self.state.target, upload_id).await;
        }
    }
}

impl S3Appended {
    /// Writes the leftover as the new tail, then the state naming it.
    async fn commit(self) -> Result<u64, StorageError> {
        let Self {
            staging,
            id,
            mut state,
            upload_id,
            new_parts,
            leftover,
            len,
            ..
        } = self;
        let old_tail = state.tail;
        let generation = old_tail.map_or(1, |t| t.generation + 1);
        state.tail = if leftover.is_empty() {
            None
        } else {
            let tail_len = leftover.len() as u64;
            staging
                .store
                .put_bytes(
                    &key(&id, &format!("tail-{generation}"))?,
                    leftover,
                    "application/octet-stream",
                )
                .await?;
            Some(Tail {
                generation,
                len: tail_len,
            })
        };
        state.parts.extend(new_parts);
        state.upload_id = upload_id;
        state.offset += len;
        staging.write_state(&id, &state).await?;
        if let Some(old) = old_tail {
            staging.drop_tail(&id, old.generation).await;
        }
        Ok(state.offset)
    }
}

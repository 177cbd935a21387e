//! Staging on S3: every node sharing the bucket can append to any upload.
//! Per upload, under `tus/ID/`: `info` (the caller's descriptor), `state`
//! (the multipart upload, its parts and the tail) and `tail-N`, the bytes
//! past the last full part (S3 parts other than the last must be at least
//! 5 MiB, while a PATCH may bring any number of bytes). Parts are uploaded
//! as the bytes arrive; the state is the commit point of an append, so
//! parts an append uploaded and then discarded are simply never listed
//! (and overwritten by the next append that uploads the same numbers).

mod append;

use self::append::S3Appended;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::types::CompletedPart;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::S3Store;
use super::errors::object_error;
use super::multipart::{MIN_PART_SIZE, abort_upload};
use crate::storage::staging::{Appended, Body, Staged, Staging, check_id};
use crate::storage::{BlobStore, ByteStream, ListPages, Listed, StorageError};

/// Prefix of the staging objects in the store.
const PREFIX: &str = "tus/";

/// One uploaded part.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Part {
    number: i32,
    etag: Option<String>,
    len: u64,
}

/// The bytes past the last part, in object `tail-GENERATION`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Tail {
    generation: u64,
    len: u64,
}

/// What is staged of one upload: the commit point of every append.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    /// The store key the bytes become.
    target: String,
    /// Whether the target is this upload's own `data` object (kept here
    /// until removed) rather than a key the caller owns.
    own_target: bool,
    upload_id: Option<String>,
    parts: Vec<Part>,
    tail: Option<Tail>,
    offset: u64,
    completed: bool,
}

/// Resumable uploads staged in the bucket of an [`S3Store`].
#[derive(Debug, Clone)]
pub struct S3Staging {
    store: S3Store,
}

impl S3Staging {
    /// Stages in `store`'s bucket, under its prefix.
    pub fn new(store: S3Store) -> Self {
        Self { store }
    }

    fn part_size(&self) -> u64 {
        self.store.part_size.max(MIN_PART_SIZE)
    }

    async fn state(&self, id: &str) -> Result<(State, SystemTime), StorageError> {
        let key = key(id, "state")?;
        let object = self.store.object_key(&key)?;
        let output = self
            .store
            .client
            .get_object()
            .bucket(&self.store.bucket)
            .key(&object)
            .send()
            .await
            .map_err(|e| object_error("reading", id, &object, e))?;
        let modified = output
            .last_modified()
            .and_then(|t| SystemTime::try_from(*t).ok())
            .unwrap_or_else(SystemTime::now);
        let body = output
            .body
            .collect()
            .await
            .map_err(|e| StorageError::unavailable(format!("s3: reading {object}"), e))?;
        let state = serde_json::from_slice(&body.into_bytes())
            .map_err(|e| StorageError::unavailable(format!("s3: reading {object}"), e))?;
        Ok((state, modified))
    }

    async fn write_state(&self, id: &str, state: &State) -> Result<(), StorageError> {
        let json = serde_json::to_vec(state)
            .map_err(|e| StorageError::unavailable("serializing a staging state", e))?;
        self.store
            .put_bytes(&key(id, "state")?, json.into(), "application/json")
            .await
    }

    async fn start_multipart(&self, target: &str) -> Result<String, StorageError> {
        self.store
            .start_multipart(&self.store.object_key(target)?, None)
            .await
    }

    async fn upload_part(
        &self,
        target: &str,
        upload_id: &str,
        number: i32,
        bytes: Bytes,
    ) -> Result<Part, StorageError> {
        let len = bytes.len() as u64;
        let etag = self
            .store
            .upload_part(
                &self.store.object_key(target)?,
                upload_id,
                number,
                SdkByteStream::from(bytes),
                len,
            )
            .await?;
        Ok(Part { number, etag, len })
    }

    async fn abort(&self, target: &str, upload_id: &str) {
        if let Ok(object) = self.store.object_key(target) {
            abort_upload(&self.store.client, &self.store.bucket, &object, upload_id).await;
        }
    }

    /// Deletes the tail of generation `generation`; a leftover is harmless
    /// (no state names it) and goes with the upload.
    async fn drop_tail(&self, id: &str, generation: u64) {
        if let Ok(tail) = key(id, &format!("tail-{generation}"))
            && let Err(e) = self.store.delete(&tail).await
        {
            tracing::warn!(id, error = %crate::text::chain(&e), "cannot delete a staged tail");
        }
    }
}

/// The key of object `name` of staged upload `id`.
fn key(id: &str, name: &str) -> Result<String, StorageError> {
    check_id(id)?;
    Ok(format!("{PREFIX}{id}/{name}"))
}

#[async_trait]
impl Staging for S3Staging {
    async fn create(
        &self,
        id: &str,
        info: Bytes,
        target: Option<&str>,
    ) -> Result<(), StorageError> {
        let (target, own_target) = match target {
            Some(target) => (target.to_string(), false),
            None => (key(id, "data")?, true),
        };
        self.store.object_key(&target)?;
        self.store
            .put_bytes(&key(id, "info")?, info, "application/json")
            .await?;
        let state = State {
            target,
            own_target,
            upload_id: None,
            parts: Vec::new(),
            tail: None,
            offset: 0,
            completed: false,
        };
        self.write_state(id, &state).await
    }

    async fn load(&self, id: &str) -> Result<Staged, StorageError> {
        let info = self.store.get_bytes(&key(id, "info")?).await?;
        let (state, modified) = self.state(id).await?;
        Ok(Staged {
            info,
            offset: state.offset,
            completed: state.completed,
            modified,
        })
    }

    async fn set_info(&self, id: &str, info: Bytes) -> Result<(), StorageError> {
        // Only an upload that exists gets a new descriptor.
        self.state(id).await?;
        self.store
            .put_bytes(&key(id, "info")?, info, "application/json")
            .await
    }

    async fn append(
        &self,
        id: &str,
        offset: u64,
        mut body: Body<'_>,
    ) -> Result<Box<dyn Appended>, StorageError> {
        let (state, _) = self.state(id).await?;
        if state.completed || state.offset != offset {
            return Err(StorageError::Conflict(format!(
                "{id} has {} bytes staged, not {offset}",
                state.offset
            )));
        }
        let part_size = usize::try_from(self.part_size()).unwrap_or(usize::MAX);
        let mut buffer = BytesMut::new();
        if let Some(tail) = state.tail {
            let bytes = self
                .store
                .get_bytes(&key(id, &format!("tail-{}", tail.generation))?)
                .await?;
            buffer.extend_from_slice(&bytes);
        }
        let mut appended = S3Appended {
            staging: self.clone(),
            id: id.to_string(),
            upload_id: state.upload_id.clone(),
            started_upload: false,
            new_parts: Vec::new(),
            leftover: Bytes::new(),
            len: 0,
            state,
        };
        while let Some(Ok(chunk)) = body.next().await {
            appended.len += chunk.len() as u64;
            buffer.extend_from_slice(&chunk);
            while buffer.len() >= part_size {
                let part = buffer.split_to(part_size).freeze();
                if let Err(e) = appended.upload(part).await {
                    Box::new(appended).discard().await;
                    return Err(e);
                }
            }
        }
        appended.leftover = buffer.freeze();
        Ok(Box::new(appended))
    }

    async fn complete(&self, id: &str) -> Result<(), StorageError> {
        let (mut state, _) = self.state(id).await?;
        if state.completed {
            return Ok(());
        }
        let tail = match state.tail {
            Some(tail) => {
                self.store
                    .get_bytes(&key(id, &format!("tail-{}", tail.generation))?)
                    .await?
            }
            None => Bytes::new(),
        };
        match state.upload_id.clone() {
            // Never a full part: one plain object.
            None => {
                self.store
                    .put_bytes(&state.target, tail, "application/octet-stream")
                    .await?;
            }
            Some(upload_id) => {
                let mut parts = state.parts.clone();
                if !tail.is_empty() {
                    let number = i32::try_from(parts.len() + 1).map_err(|_| {
                        StorageError::unavailable_bare(format!("s3: too many parts for {id}"))
                    })?;
                    parts.push(
                        self.upload_part(&state.target, &upload_id, number, tail)
                            .await?,
                    );
                }
                let object = self.store.object_key(&state.target)?;
                let completed = parts
                    .iter()
                    .map(|p| {
                        CompletedPart::builder()
                            .part_number(p.number)
                            .set_e_tag(p.etag.clone())
                            .build()
                    })
                    .collect();
                let done = self
                    .store
                    .complete_multipart(&object, &upload_id, completed)
                    .await;
                if let Err(e) = done {
                    // An earlier attempt may have completed it and failed
                    // only to record that.
                    let whole = self.store.size_of(&state.target, &object).await.ok();
                    if whole != Some(state.offset) {
                        return Err(e);
                    }
                }
            }
        }
        let old_tail = state.tail.take();
        state.completed = true;
        self.write_state(id, &state).await?;
        if let Some(tail) = old_tail {
            self.drop_tail(id, tail.generation).await;
        }
        Ok(())
    }

    async fn read(&self, id: &str) -> Result<ByteStream, StorageError> {
        let (state, _) = self.state(id).await?;
        if !state.completed || !state.own_target {
            return Err(StorageError::Conflict(format!(
                "{id} is not a completed staged upload"
            )));
        }
        Ok(self.store.get(&state.target, None).await?.body)
    }

    async fn remove(&self, id: &str) -> Result<(), StorageError> {
        match self.state(id).await {
            Ok((state, _)) => {
                if !state.completed
                    && let Some(upload_id) = &state.upload_id
                {
                    self.abort(&state.target, upload_id).await;
                }
                if state.completed && state.own_target {
                    self.store.delete(&state.target).await?;
                }
            }
            Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        // Tails of any generation, then the state, the descriptor last:
        // while it is there the upload can be found (and removed again).
        let prefix = format!("{PREFIX}{id}/");
        let mut rest = Vec::new();
        let mut pages = self.store.list(&prefix);
        while let Some(page) = pages.next().await {
            rest.extend(page?.into_iter().map(|listed| listed.key));
        }
        drop(pages);
        let info = key(id, "info")?;
        rest.retain(|k| *k != info);
        rest.sort_by_key(|k| k.ends_with("/state"));
        for object in rest {
            self.store.delete(&object).await?;
        }
        self.store.delete(&info).await
    }

    fn list(&self) -> ListPages<'_> {
        Box::pin(self.store.list(PREFIX).map(|page| {
            let mut ids: Vec<Listed> = Vec::new();
            for listed in page? {
                let Some(id) = listed
                    .key
                    .strip_prefix(PREFIX)
                    .and_then(|rest| rest.split_once('/'))
                    .map(|(id, _)| id)
                else {
                    continue;
                };
                match ids.last_mut() {
                    Some(last) if last.key == id => {
                        last.modified = last.modified.max(listed.modified)
                    }
                    _ => ids.push(Listed {
                        key: id.to_string(),
                        modified: listed.modified,
                    }),
                }
            }
            Ok(ids)
        }))
    }
}

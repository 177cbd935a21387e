//! Multipart uploads of large files: parts are read from disk one by one
//! and sent a few at a time, and an upload that fails or is dropped half
//! way is aborted so that no orphan parts are left behind.

use std::path::Path;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::{ByteStream as SdkByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures::{StreamExt, TryStreamExt};

use super::errors::sdk_error;
use super::{MIB, S3Store};
use crate::storage::StorageError;

/// The smallest part S3 accepts (except for the last part of an upload).
pub(super) const MIN_PART_SIZE: u64 = 5 * MIB;

/// The most parts one multipart upload may have.
const MAX_PARTS: u64 = 10_000;

/// Parts of one multipart upload sent at the same time.
const PART_CONCURRENCY: usize = 4;

impl S3Store {
    /// Uploads `path` (of `size` bytes) to `object` in parts, aborting the
    /// upload on any failure or if the future is dropped.
    pub(super) async fn put_multipart(
        &self,
        object: &str,
        path: &Path,
        size: u64,
        content_type: &str,
    ) -> Result<(), StorageError> {
        let upload_id = self.start_multipart(object, Some(content_type)).await?;
        let mut guard = AbortOnDrop {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: object.to_string(),
            upload_id: Some(upload_id.clone()),
        };
        // Stay within S3's part count whatever the file size.
        let part_size = self.part_size.max(size.div_ceil(MAX_PARTS));
        let parts = (0..size.div_ceil(part_size)).map(|index| {
            let offset = index * part_size;
            (index, offset, part_size.min(size - offset))
        });
        let upload_id_ref = upload_id.as_str();
        let result: Result<Vec<CompletedPart>, StorageError> = futures::stream::iter(parts)
            .map(|(index, offset, len)| async move {
                // Parts are numbered from 1; at most 10,000 fit in an i32.
                let number = i32::try_from(index + 1).map_err(|_| {
                    StorageError::unavailable_bare(format!("s3: too many parts for {object}"))
                })?;
                let body = SdkByteStream::read_from()
                    .path(path)
                    .offset(offset)
                    .length(Length::Exact(len))
                    .build()
                    .await
                    .map_err(|e| {
                        StorageError::unavailable(format!("reading {}", path.display()), e)
                    })?;
                let etag = self
                    .upload_part(object, upload_id_ref, number, body, len)
                    .await?;
                Ok(CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(etag)
                    .build())
            })
            .buffered(PART_CONCURRENCY)
            .try_collect()
            .await;
        let completed = match result {
            Ok(parts) => parts,
            Err(e) => {
                guard.abort().await;
                return Err(e);
            }
        };
        let done = self.complete_multipart(object, &upload_id, completed).await;
        match done {
            Ok(_) => {
                guard.upload_id = None;
                Ok(())
            }
            Err(e) => {
                guard.abort().await;
                Err(e)
            }
        }
    }
}

impl S3Store {
    /// Starts a multipart upload of S3 object `object`; its upload id.
    pub(super) async fn start_multipart(
        &self,
        object: &str,
        content_type: Option<&str>,
    ) -> Result<String, StorageError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(object)
            .set_content_type(content_type.map(str::to_string))
            .send()
            .await
            .map_err(|e| sdk_error("starting multipart upload of", object, e))?;
        match created.upload_id() {
            Some(id) if !id.is_empty() => Ok(id.to_string()),
            _ => Err(StorageError::unavailable_bare(format!(
                "s3: no upload id for a multipart upload of {object}"
            ))),
        }
    }

    /// Uploads part `number` (`len` bytes of `body`); its ETag.
    pub(super) async fn upload_part(
        &self,
        object: &str,
        upload_id: &str,
        number: i32,
        body: SdkByteStream,
        len: u64,
    ) -> Result<Option<String>, StorageError> {
        let part = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(object)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(i64::try_from(len).unwrap_or(i64::MAX))
            .body(body)
            .send()
            .await
            .map_err(|e| sdk_error("uploading a part of", object, e))?;
        Ok(part.e_tag().map(str::to_string))
    }

    /// Completes a multipart upload from `parts`, in order.
    pub(super) async fn complete_multipart(
        &self,
        object: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), StorageError> {
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(object)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| sdk_error("completing multipart upload of", object, e))?;
        Ok(())
    }
}

/// Aborts a multipart upload unless it completed, so that no orphan parts
/// are left behind, even when the upload future is dropped half way.
struct AbortOnDrop {
    client: Client,
    bucket: String,
    key: String,
    upload_id: Option<String>,
}

impl AbortOnDrop {
    /// Aborts the upload now.
    async fn abort(&mut self) {
        if let Some(upload_id) = self.upload_id.take() {
            abort_upload(&self.client, &self.bucket, &self.key, &upload_id).await;
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (client, bucket, key) =
                (self.client.clone(), self.bucket.clone(), self.key.clone());
            runtime.spawn(async move { abort_upload(&client, &bucket, &key, &upload_id).await });
        } else {
            tracing::warn!(key = %self.key, upload_id, "multipart upload left unfinished");
        }
    }
}

pub(super) async fn abort_upload(client: &Client, bucket: &str, key: &str, upload_id: &str) {
    let aborted = client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await;
    if let Err(e) = aborted {
        tracing::warn!(
            key,
            upload_id,
            error = %DisplayErrorContext(&e),
            "aborting a multipart upload failed"
        );
    }
}

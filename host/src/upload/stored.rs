//! Uploads whose bytes reached storage another way (a resumable upload
//! completed at its content key): the same processors, record and
//! post-store queue as a one-shot upload, reading the content from storage.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::ingest::{Arrival, Place};
use super::names::sanitize_filename;
use super::{Ingested, UploadError, UploadService, keys};
use crate::auth::Client;
use crate::runtime::ContentSource;
use crate::storage::BlobStore;
use crate::text::essence;

/// Bytes fetched per storage read: plugins read in small pieces, and a
/// remote store answers each read with a round trip.
const READ_AHEAD: u64 = 1 << 20;

/// An upload stored at [`keys::content`] of its id.
#[derive(Debug, Clone)]
pub struct StoredUpload {
    /// Its id.
    pub id: String,
    /// The client's file name (sanitized here).
    pub filename: String,
    /// The declared content type.
    pub content_type: String,
    /// Its size.
    pub size: u64,
    /// SHA-256 of its bytes (hex).
    pub sha256: String,
}

impl UploadService {
    /// Runs `stored` through the pipeline for `client`; if it is refused or
    /// fails, its content is removed.
    #[tracing::instrument(name = "upload", skip_all, fields(client = %client.name, id = %stored.id))]
    pub async fn ingest_stored(
        &self,
        client: &Client,
        stored: StoredUpload,
    ) -> Result<Ingested, UploadError> {
        let key = keys::content(&stored.id);
        let content_type = essence(&stored.content_type);
        if !client.allows(&content_type) {
            self.forget_content(&key).await;
            return Err(UploadError::UnsupportedType(content_type));
        }
        let content = Arc::new(StoredContent::new(
            Arc::clone(&self.store),
            key,
            stored.size,
        ));
        self.accept(
            client,
            Arrival {
                id: stored.id,
                filename: sanitize_filename(&stored.filename),
                content_type,
                size: stored.size,
                sha256: stored.sha256,
                content,
                place: Place::Stored,
            },
        )
        .await
    }
}

/// An object in storage read in blocks of [`READ_AHEAD`], the last block
/// kept for the reads that follow.
pub struct StoredContent {
    store: Arc<dyn BlobStore>,
    key: String,
    size: u64,
    block: Mutex<Option<(u64, Bytes)>>,
}

impl StoredContent {
    /// Object `key` of `store`, of `size` bytes.
    pub fn new(store: Arc<dyn BlobStore>, key: String, size: u64) -> Self {
        Self {
            store,
            key,
            size,
            block: Mutex::new(None),
        }
    }

    fn cached(&self, offset: u64, len: usize) -> Option<Bytes> {
        let block = self.block.lock().unwrap_or_else(PoisonError::into_inner);
        let (start, bytes) = block.as_ref()?;
        let from = usize::try_from(offset.checked_sub(*start)?).ok()?;
        let to = from.checked_add(len)?;
        (to <= bytes.len()).then(|| bytes.slice(from..to))
    }
}

#[async_trait]
impl ContentSource for StoredContent {
    fn size(&self) -> u64 {
        self.size
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let len = usize::try_from(self.size.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(len);
        if len == 0 {
            return Ok(Bytes::new());
        }
        if let Some(bytes) = self.cached(offset, len) {
            return Ok(bytes);
        }
        let end = offset
            .saturating_add((len as u64).max(READ_AHEAD))
            .min(self.size);
        let object = self
            .store
            .get(&self.key, Some(offset..end))
            .await
            .map_err(io::Error::other)?;
        let mut block = BytesMut::with_capacity(usize::try_from(object.len).unwrap_or(0));
        let mut body = object.body;
        while let Some(chunk) = body.next().await {
            block.extend_from_slice(&chunk?);
        }
        let block = block.freeze();
        let out = block.slice(..len.min(block.len()));
        *self.block.lock().unwrap_or_else(PoisonError::into_inner) = Some((offset, block));
        Ok(out)
    }
}

//! Uploads whose bytes reached storage another way (a resumable upload
//! completed at its content key): the same processors, record and
//! post-store queue as a one-shot upload, reading the content from storage.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::ingest::{Arrival, Place};
use super::names::sanitize_filename;
use super::{Ingested, UploadError, UploadService, keys};
use crate::auth::Client;
use crate::runtime::{ContentSource, readable};
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

/// An object in storage, the last block read kept for the reads that
/// follow. A read that starts the object or continues where the last block
/// ended fetches [`READ_AHEAD`] bytes; any other fetches only what it asks
/// for, so a plugin jumping about (charged only for the bytes it gets)
/// cannot make the host fetch more than the object's size beyond them.
pub struct StoredContent {
    store: Arc<dyn BlobStore>,
    key: String,
    size: u64,
    block: Mutex<Option<(u64, Bytes)>>,
    fetched: AtomicU64,
}

impl StoredContent {
    /// Object `key` of `store`, of `size` bytes.
    pub fn new(store: Arc<dyn BlobStore>, key: String, size: u64) -> Self {
        Self {
            store,
            key,
            size,
            block: Mutex::new(None),
            fetched: AtomicU64::new(0),
        }
    }

    /// Bytes fetched from storage so far.
    pub fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    /// Whether a read at `offset` goes on in order: from the start, or
    /// where the last block ended.
    fn sequential(&self, offset: u64) -> bool {
        let block = self.block.lock().unwrap_or_else(PoisonError::into_inner);
        match block.as_ref() {
            None => offset == 0,
            Some((start, bytes)) => start.saturating_add(bytes.len() as u64) == offset,
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
        let len = readable(self.size, offset, len);
        if len == 0 {
            return Ok(Bytes::new());
        }
        if let Some(bytes) = self.cached(offset, len) {
            return Ok(bytes);
        }
        let fetch = if self.sequential(offset) {
            (len as u64).max(READ_AHEAD)
        } else {
            len as u64
        };
        let end = offset.saturating_add(fetch).min(self.size);
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
        self.fetched
            .fetch_add(block.len() as u64, Ordering::Relaxed);
        let out = block.slice(..len.min(block.len()));
        *self.block.lock().unwrap_or_else(PoisonError::into_inner) = Some((offset, block));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStore;

    async fn content(size: usize) -> (tempfile::TempDir, StoredContent) {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("no temporary directory");
        };
        let Ok(store) = LocalStore::open(dir.path()).await else {
            panic!("no store");
        };
        let bytes = Bytes::from(vec![7u8; size]);
        if let Err(e) = store
            .put_bytes("obj", bytes, "application/octet-stream")
            .await
        {
            panic!("{e}");
        }
        let content = StoredContent::new(Arc::new(store), "obj".into(), size as u64);
        (dir, content)
    }

    #[tokio::test]
    async fn reads_in_order_are_fetched_a_block_at_a_time() {
        let (_dir, content) = content(3 << 20).await;
        let mut offset = 0;
        while offset < content.size() {
            let Ok(bytes) = content.read_at(offset, 4096).await else {
                panic!("read failed");
            };
            offset += bytes.len() as u64;
        }
        assert_eq!(content.fetched(), 3 << 20);
    }

    #[tokio::test]
    async fn scattered_reads_fetch_only_what_they_ask() {
        let (_dir, content) = content(8 << 20).await;
        // One byte here and there, never where the last block ended.
        for i in 0..64u64 {
            let offset = 1 + (i * 7_919_003) % ((8 << 20) - 2);
            let Ok(bytes) = content.read_at(offset, 1).await else {
                panic!("read failed");
            };
            assert_eq!(bytes.len(), 1);
        }
        assert_eq!(content.fetched(), 64);
    }
}

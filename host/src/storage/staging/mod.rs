//! Staged bytes of resumable uploads: what has arrived of an upload that is
//! not finished yet, kept where every node sharing the storage can append
//! to it (local disk: a file per upload; S3: a multipart upload per upload).
//!
//! A staged upload has an opaque descriptor (written by the caller) and a
//! length. Bytes are appended in two steps, so that a caller can decide
//! after the body ended whether to keep them (a checksum that matched, a
//! client that went away half way) or drop them (a checksum mismatch).
//! Once whole, it is completed: its bytes become the store object named at
//! creation, or, for an upload without one (a part of a concatenation),
//! stay readable here until removed.

mod local;

use std::io;
use std::pin::Pin;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub use self::local::LocalStaging;
use super::{ByteStream, ListPages, StorageError};

/// Bytes to append; the first error ends them.
pub type Body<'a> = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + 'a>>;

/// A staged upload as last written.
#[derive(Debug, Clone)]
pub struct Staged {
    /// The caller's descriptor.
    pub info: Bytes,
    /// Bytes staged so far.
    pub offset: u64,
    /// Whether [`Staging::complete`] ran.
    pub completed: bool,
    /// When bytes or the descriptor were last written.
    pub modified: SystemTime,
}

/// Bytes written by [`Staging::append`], not yet part of the upload.
#[async_trait]
pub trait Appended: Send {
    /// How many.
    fn len(&self) -> u64;
    /// Whether none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Makes them part of the upload (durably); returns the new length.
    async fn keep(self: Box<Self>) -> Result<u64, StorageError>;
    /// [`Self::keep`] for the last bytes of an upload that is completed
    /// right after, which makes them durable: they need not be now.
    async fn keep_to_complete(self: Box<Self>) -> Result<u64, StorageError> {
        self.keep().await
    }
    /// Drops them: the upload's length stays what it was.
    async fn discard(self: Box<Self>);
}

/// Where resumable uploads are staged.
#[async_trait]
pub trait Staging: Send + Sync + 'static {
    /// Starts staging `id` with descriptor `info`. Once complete, its bytes
    /// become store object `target`; without one they stay staged.
    async fn create(&self, id: &str, info: Bytes, target: Option<&str>)
    -> Result<(), StorageError>;
    /// The staged upload `id`.
    async fn load(&self, id: &str) -> Result<Staged, StorageError>;
    /// Replaces the descriptor of `id`.
    async fn set_info(&self, id: &str, info: Bytes) -> Result<(), StorageError>;
    /// Writes `body` after the `offset` bytes staged so far (a
    /// [`StorageError::Conflict`] if that is not the staged length). The
    /// body ends at its first error: what came before it is written, and
    /// the caller decides to keep or discard it.
    async fn append(
        &self,
        id: &str,
        offset: u64,
        body: Body<'_>,
    ) -> Result<Box<dyn Appended>, StorageError>;
    /// Makes the staged bytes whole: the target object when there is one.
    /// Idempotent.
    async fn complete(&self, id: &str) -> Result<(), StorageError>;
    /// The bytes of a completed upload without a target.
    async fn read(&self, id: &str) -> Result<ByteStream, StorageError>;
    /// Forgets `id`: its staged bytes go too, unless they became the target
    /// object.
    async fn remove(&self, id: &str) -> Result<(), StorageError>;
    /// Every staged id (as [`super::Listed::key`]) with when it was last
    /// written, a page at a time.
    fn list(&self) -> ListPages<'_>;
}

/// Checks an id is one segment a key may hold.
pub(in crate::storage) fn check_id(id: &str) -> Result<(), StorageError> {
    if id.contains('/') {
        return Err(StorageError::InvalidKey(id.to_string()));
    }
    super::check_key(id)
}

//! Durable storage of upload content, records and derived artifacts.
//!
//! [`BlobStore`] is the seam; [`LocalStore`] (the embedded default) and
//! [`S3Store`] implement it. Keys are built by the host from upload ids and
//! validated names, never from raw client input.

mod local;
mod s3;
mod walk;

use std::ops::Range;
use std::path::Path;
use std::pin::Pin;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub use self::local::LocalStore;
pub use self::s3::{S3Settings, S3Store};

/// A stream of object bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// An object being read.
pub struct Object {
    /// The requested bytes (the whole object, or the range asked for).
    pub body: ByteStream,
    /// Length of `body`.
    pub len: u64,
    /// Size of the whole object.
    pub total_size: u64,
}

/// An object found by [`BlobStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its key.
    pub key: String,
    /// When it was last written.
    pub modified: SystemTime,
}

/// Pages of listed objects, in byte order of their keys.
pub type ListPages<'a> = Pin<Box<dyn Stream<Item = Result<Vec<Listed>, StorageError>> + Send + 'a>>;

/// A storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No object under that key.
    #[error("not found: {0}")]
    NotFound(String),
    /// The range starts at or past the end of the object.
    #[error("range not satisfiable for an object of {size} bytes")]
    RangeNotSatisfiable {
        /// The object's size.
        size: u64,
    },
    /// A key that is not one the host builds.
    #[error("invalid storage key: {0}")]
    InvalidKey(String),
    /// The backend failed or is unreachable.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// Where uploads live. Every write is durable when it returns: a reader on
/// any node sees all of it or nothing.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Short name for logs and readiness (`local`, `s3`).
    fn kind(&self) -> &'static str;
    /// Stores the local file at `path` under `key`. The file may be moved
    /// (local disk) or uploaded (S3, multipart when large); the caller must
    /// not use `path` afterwards.
    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        content_type: &str,
    ) -> Result<(), StorageError>;
    /// Stores `bytes` under `key`.
    async fn put_bytes(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<(), StorageError>;
    /// Reads `key`, or the byte `range` of it (end exclusive, clamped to the
    /// object's size).
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Object, StorageError>;
    /// Reads a small object whole (records).
    async fn get_bytes(&self, key: &str) -> Result<Bytes, StorageError>;
    /// Removes `key`; removing a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// Lists the objects under `prefix` (empty, or a key prefix ending in
    /// `/`), a page at a time, in byte order of their keys, so that the
    /// objects of one upload come together.
    fn list<'a>(&'a self, prefix: &'a str) -> ListPages<'a>;
    /// Checks the backend answers (for readiness probes).
    async fn ping(&self) -> Result<(), StorageError>;
}

/// Checks `prefix` is empty or a valid key followed by `/`.
pub fn check_prefix(prefix: &str) -> Result<(), StorageError> {
    match prefix.strip_suffix('/') {
        _ if prefix.is_empty() => Ok(()),
        Some(dir) => check_key(dir),
        None => Err(StorageError::InvalidKey(prefix.to_string())),
    }
}

/// Checks a key is made of safe segments: `[A-Za-z0-9._-]+` separated by `/`,
/// no segment starting with a dot.
pub fn check_key(key: &str) -> Result<(), StorageError> {
    let ok = !key.is_empty()
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidKey(key.to_string()))
    }
}

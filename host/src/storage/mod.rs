//! Durable storage of upload content, records and derived artifacts.
//!
//! [`BlobStore`] is the seam; [`LocalStore`] (the embedded default) and
//! [`S3Store`] implement it. Keys are built by the host from upload ids and
//! validated names, never from raw client input.

mod local;
mod s3;
pub mod staging;
mod walk;

use std::ops::Range;
use std::path::Path;
use std::pin::Pin;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub use self::local::LocalStore;
pub use self::s3::{S3Settings, S3Staging, S3Store};
pub use self::staging::{Appended, Body, LocalStaging, Staged, Staging};

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
    /// The object is not in the state the operation needs (a staged upload
    /// whose length is not the one the caller expected).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A key that is not one the host builds.
    #[error("invalid storage key: {0}")]
    InvalidKey(String),
    /// The backend failed or is unreachable. The message says what was
    /// being done; the underlying error, if any, is the `source`, not part
    /// of the message, so that a report of the whole chain shows it once.
    #[error("storage unavailable: {what}")]
    Unavailable {
        /// What failed (`s3: reading up/KEY`, `creating /var/lib/airlock`).
        what: String,
        /// Why, when an underlying error says so.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StorageError {
    /// The backend failed doing `what` because of `source`.
    pub fn unavailable(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Unavailable {
            what: what.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The backend cannot be used, for a reason no underlying error gives
    /// (a setting missing, an answer that makes no sense).
    pub fn unavailable_bare(what: impl Into<String>) -> Self {
        Self::Unavailable {
            what: what.into(),
            source: None,
        }
    }
}

/// Writes every byte of `chunks` to `file` with `writev`, without joining
/// them first.
pub fn write_chunks(file: &mut std::fs::File, chunks: &[Bytes]) -> std::io::Result<()> {
    use std::io::{IoSlice, Write};
    // Empty chunks are left out: a write of nothing but them returns 0,
    // which would read as a disk that takes no more.
    let mut slices: Vec<IoSlice<'_>> = chunks
        .iter()
        .filter(|chunk| !chunk.is_empty())
        .map(|chunk| IoSlice::new(chunk))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
    /// Stores the concatenation of `chunks` under `key` (a body received in
    /// pieces). By default joined and stored as [`Self::put_bytes`]; the
    /// local store writes them as they are, without the copy.
    async fn put_chunks(
        &self,
        key: &str,
        chunks: Vec<Bytes>,
        content_type: &str,
    ) -> Result<(), StorageError> {
        self.put_bytes(key, Bytes::from(chunks.concat()), content_type)
            .await
    }
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
    /// Removes the temporary files of writes cut short by a crash, older
    /// than `cutoff`; how many. Only stores that write through temporary
    /// files have any (local disk).
    async fn sweep_temp(&self, cutoff: std::time::SystemTime) -> Result<u64, StorageError> {
        let _ = cutoff;
        Ok(0)
    }
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

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[tokio::test]
    async fn an_io_failure_is_the_source_not_part_of_the_message() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("no temporary directory");
        };
        let file = dir.path().join("file");
        if let Err(e) = std::fs::write(&file, b"x") {
            panic!("writing {}: {e}", file.display());
        }
        // Nothing can be created under a regular file.
        let root = file.join("root");
        let Err(err) = LocalStore::open(&root).await else {
            panic!("opened a store under a regular file");
        };
        assert_eq!(
            err.to_string(),
            format!("storage unavailable: creating {}", root.display())
        );
        let Some(cause) = err
            .source()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
        else {
            panic!("no io::Error source: {err:?}");
        };
        let cause = cause.to_string();
        let chain = crate::text::chain(&err);
        assert_eq!(chain.matches(&cause).count(), 1, "{chain}");
    }
}

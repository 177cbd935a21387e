//! Why a resumable upload request failed; each maps to one HTTP status.

use crate::lock::LockError;
use crate::storage::StorageError;
use crate::upload::UploadError;

/// Why a resumable upload request failed.
#[derive(Debug, thiserror::Error)]
pub enum TusError {
    /// The pipeline refused or failed it (413, 415, 422, 408, 429, 503…).
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// 404: no such upload for this client.
    #[error("no such upload")]
    NotFound,
    /// 410: the upload expired before it was finished; it is removed.
    #[error("the upload expired before it was finished")]
    Expired,
    /// 409: the PATCH does not start where the upload stands.
    #[error("Upload-Offset is {given} but the upload has {expected} bytes")]
    OffsetMismatch {
        /// The upload's offset.
        expected: u64,
        /// The request's.
        given: u64,
    },
    /// 409: the upload is finished (or a part of a concatenation that is).
    #[error("the upload is finished; it takes no more bytes")]
    Finished,
    /// 403: a final upload (a concatenation) takes no PATCH.
    #[error("a final upload is made of its parts; it takes no PATCH")]
    FinalUpload,
    /// 413: the bytes go past the upload's declared length.
    #[error("the body goes past the upload's length of {length} bytes")]
    PastLength {
        /// The declared length.
        length: u64,
    },
    /// 460: the body does not match its `Upload-Checksum`; it was dropped.
    #[error("the body does not match its Upload-Checksum; it was discarded")]
    ChecksumMismatch,
    /// 400: a header or combination of headers that does not parse or
    /// makes no sense.
    #[error("{0}")]
    BadRequest(String),
    /// 423: another request is writing to this upload.
    #[error("another request is writing to this upload; retry")]
    Locked,
    /// 503: the locks' backend failed.
    #[error("lock unavailable")]
    Lock(#[source] LockError),
    /// 503 (or 409 for a conflicting staged state): storage failed.
    #[error(transparent)]
    Storage(StorageError),
}

impl TusError {
    /// A 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }
}

impl From<StorageError> for TusError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::NotFound(_) => Self::NotFound,
            other => Self::Storage(other),
        }
    }
}

impl From<LockError> for TusError {
    fn from(err: LockError) -> Self {
        match err {
            LockError::Busy { .. } => Self::Locked,
            other => Self::Lock(other),
        }
    }
}

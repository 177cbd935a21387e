//! Why an upload, or a read of one, failed.

use crate::storage::StorageError;

/// Why an upload (or a read of one) failed; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// 413: over the client's body limit.
    #[error("upload is larger than the {limit} bytes allowed")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// 415: content type not allowed for this client.
    #[error("content type {0:?} is not accepted")]
    UnsupportedType(String),
    /// 422: a processor rejected it.
    #[error("rejected by plugin `{plugin}`: {reason}")]
    Rejected {
        /// The plugin.
        plugin: String,
        /// Its reason, for the client.
        reason: String,
    },
    /// 503: a fail-closed plugin failed.
    #[error("plugin `{plugin}` failed and its hook is fail-closed: {reason}")]
    PluginFailed {
        /// The plugin.
        plugin: String,
        /// What happened.
        reason: String,
    },
    /// 503: a processor had no free slot for as long as the upload could
    /// wait; nothing was stored. Retry later.
    #[error("plugin `{plugin}` is busy: no slot freed within {waited_seconds} s; retry later")]
    PluginBusy {
        /// The plugin.
        plugin: String,
        /// How long the upload waited.
        waited_seconds: u64,
    },
    /// 429: the client already has its share of uploads open.
    #[error("{limit} uploads of this client are already in progress; retry when one is done")]
    TooManyUploads {
        /// The client's cap.
        limit: usize,
    },
    /// 408: the body stalled.
    #[error("the request body sent nothing for {seconds} s")]
    SlowBody {
        /// The read timeout.
        seconds: f64,
    },
    /// 408: the body took too long as a whole.
    #[error("the request body did not arrive within {seconds} s")]
    UploadDeadline {
        /// The deadline.
        seconds: u64,
    },
    /// 400: the request body could not be read.
    #[error("cannot read the request body")]
    Body(#[source] BoxError),
    /// 404: no such upload for this client.
    #[error("no such upload")]
    NotFound,
    /// 416: bad range.
    #[error("range not satisfiable for {size} bytes")]
    RangeNotSatisfiable {
        /// Object size.
        size: u64,
    },
    /// 503: storage failed.
    #[error(transparent)]
    Storage(StorageError),
    /// 503: the post-store job could not be queued (nothing was stored).
    #[error("cannot queue the post-store job")]
    Queue(#[source] crate::jobs::JobError),
    /// 500: the host failed (local I/O, a bug).
    #[error("internal error: {what}")]
    Internal {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
}

impl From<StorageError> for UploadError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::NotFound(_) => UploadError::NotFound,
            StorageError::RangeNotSatisfiable { size } => UploadError::RangeNotSatisfiable { size },
            // The host builds every key: a bad one is a bug, not an outage.
            invalid @ StorageError::InvalidKey(_) => internal("building a storage key")(invalid),
            other => UploadError::Storage(other),
        }
    }
}

/// An error that is someone else's type, kept as a source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Wraps an error of the host as [`UploadError::Internal`] while `what`.
pub(super) fn internal<E>(what: &'static str) -> impl FnOnce(E) -> UploadError
where
    E: Into<BoxError>,
{
    move |err| UploadError::Internal {
        what,
        source: err.into(),
    }
}

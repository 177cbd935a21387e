//! What an S3 error means for the store: a missing object, a range past
//! the end, or the backend unavailable (with the SDK error as the cause).

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::storage::StorageError;

/// The HTTP status of a failed call, if the server answered.
fn status<E>(e: &SdkError<E>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// Whether S3 said there is no such object.
pub(super) fn is_not_found<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    let code = e.as_service_error().and_then(ProvideErrorMetadata::code);
    matches!(code, Some("NoSuchKey" | "NotFound")) || status(e) == Some(404)
}

/// Whether S3 said the range is past the end of the object.
pub(super) fn is_range_error<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    let code = e.as_service_error().and_then(ProvideErrorMetadata::code);
    code == Some("InvalidRange") || status(e) == Some(416)
}

/// The error of a call on an object: missing objects are `NotFound` — but
/// a missing bucket (also a 404) is not.
pub(super) fn object_error<E>(action: &str, key: &str, object: &str, e: SdkError<E>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = e.as_service_error().and_then(ProvideErrorMetadata::code);
    if code != Some("NoSuchBucket") && is_not_found(&e) {
        StorageError::NotFound(key.to_string())
    } else {
        sdk_error(action, object, e)
    }
}

/// Any other SDK error, kept whole as the source: its chain of causes says
/// why.
pub(super) fn sdk_error<E>(action: &str, what: &str, e: SdkError<E>) -> StorageError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StorageError::unavailable(format!("s3: {action} {what}"), e)
}

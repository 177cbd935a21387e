//! API errors: each variant carries its HTTP status and a stable code; the
//! body is `{"error": {"code": "...", "message": "..."}}`.

use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::admin::AdminError;
use crate::resumable::TusError;
use crate::storage::StorageError;
use crate::text::{chain, escape_untrusted};
use crate::upload::UploadError;

/// An error returned to an API client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    plugin: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with `status`, machine-readable `code` and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            plugin: None,
            headers: Vec::new(),
        }
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or unknown API key: send `Authorization: Bearer <key>`",
        )
    }

    /// 500; `detail` goes to the log only.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl From<TusError> for ApiError {
    fn from(err: TusError) -> Self {
        let message = chain(&err);
        let (status, code) = match err {
            TusError::Upload(err) => return err.into(),
            TusError::Storage(StorageError::Conflict(_)) => (StatusCode::CONFLICT, "conflict"),
            TusError::Storage(err) => return UploadError::from(err).into(),
            TusError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            TusError::Expired => (StatusCode::GONE, "expired"),
            TusError::OffsetMismatch { .. } => (StatusCode::CONFLICT, "offset_mismatch"),
            TusError::Finished => (StatusCode::CONFLICT, "finished"),
            TusError::FinalUpload => (StatusCode::FORBIDDEN, "final_upload"),
            TusError::PastLength { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "past_length"),
            TusError::ChecksumMismatch => (checksum_mismatch(), "checksum_mismatch"),
            TusError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            TusError::Locked => {
                return Self::new(StatusCode::LOCKED, "locked", message)
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            TusError::Lock(_) => (StatusCode::SERVICE_UNAVAILABLE, "lock_unavailable"),
        };
        Self::new(status, code, message)
    }
}

/// tus's "460 Checksum Mismatch".
fn checksum_mismatch() -> StatusCode {
    StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST)
}

impl From<UploadError> for ApiError {
    fn from(err: UploadError) -> Self {
        let message = chain(&err);
        let (status, code, plugin) = match err {
            UploadError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", None),
            UploadError::UnsupportedType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_type", None)
            }
            UploadError::Rejected { plugin, .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "rejected", Some(plugin))
            }
            UploadError::PluginFailed { plugin, .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "plugin_failed",
                Some(plugin),
            ),
            UploadError::PluginBusy { plugin, .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "plugin_busy", Some(plugin))
            }
            UploadError::TooManyUploads { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_uploads", None)
            }
            UploadError::SlowBody { .. } | UploadError::UploadDeadline { .. } => {
                (StatusCode::REQUEST_TIMEOUT, "request_timeout", None)
            }
            UploadError::Body(_) => (StatusCode::BAD_REQUEST, "bad_body", None),
            UploadError::NotFound => (StatusCode::NOT_FOUND, "not_found", None),
            UploadError::RangeNotSatisfiable { .. } => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "bad_range", None)
            }
            UploadError::Storage(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", None)
            }
            UploadError::Queue(_) => (StatusCode::SERVICE_UNAVAILABLE, "queue_unavailable", None),
            UploadError::Internal { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
        };
        let mut headers = Vec::new();
        if status == StatusCode::TOO_MANY_REQUESTS {
            headers.push((header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // An outage (storage, queue, a fail-closed plugin): worth a retry
            // soon, not a hammering.
            headers.push((header::RETRY_AFTER, HeaderValue::from_static("5")));
        }
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body is not read: the connection cannot carry
            // another request.
            headers.push((header::CONNECTION, HeaderValue::from_static("close")));
        }
        Self {
            status,
            code,
            message,
            plugin,
            headers,
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(err: AdminError) -> Self {
        let (status, code) = match &err {
            AdminError::UnknownPlugin(_) => (StatusCode::NOT_FOUND, "unknown_plugin"),
            AdminError::State(_) => (StatusCode::SERVICE_UNAVAILABLE, "state_unavailable"),
            AdminError::Reload(_) => (StatusCode::UNPROCESSABLE_ENTITY, "reload_refused"),
            AdminError::ReloadTask(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self::new(status, code, chain(&err))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, code = self.code, detail = %escape_untrusted(&self.message), "request failed");
        } else {
            tracing::info!(status = %self.status, code = self.code, detail = %escape_untrusted(&self.message), "request refused");
        }
        // Internal details stay in the logs.
        let message = if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            "internal error".to_string()
        } else {
            self.message
        };
        let mut error = json!({ "code": self.code, "message": message });
        if let Some(plugin) = self.plugin {
            error["plugin"] = json!(plugin);
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        response.headers_mut().extend(self.headers);
        response
    }
}

//! The tus headers: their names, and parsing them into typed values (each
//! malformed one a 400 naming it).

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::http::ApiError;
use crate::resumable::{Checksum, Concat, TusError};
use crate::upload::valid_id;

/// The protocol version spoken.
pub(super) const VERSION: &str = "1.0.0";
/// The extensions implemented.
pub(super) const EXTENSIONS: &str = "creation,creation-with-upload,creation-defer-length,termination,checksum,expiration,concatenation";
/// The body type of a PATCH (and of creation-with-upload).
pub(super) const OFFSET_STREAM: &str = "application/offset+octet-stream";
/// Where uploads live.
pub(super) const BASE: &str = "/v1/tus";

pub(super) const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
pub(super) const TUS_VERSION: HeaderName = HeaderName::from_static("tus-version");
pub(super) const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
pub(super) const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
pub(super) const UPLOAD_DEFER_LENGTH: HeaderName = HeaderName::from_static("upload-defer-length");
pub(super) const UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");
pub(super) const UPLOAD_EXPIRES: HeaderName = HeaderName::from_static("upload-expires");
pub(super) const UPLOAD_CONCAT: HeaderName = HeaderName::from_static("upload-concat");
pub(super) const UPLOAD_CHECKSUM: HeaderName = HeaderName::from_static("upload-checksum");
/// Where a finished upload's record is (`/v1/uploads/<id>`).
pub(super) const UPLOAD_RECORD: HeaderName = HeaderName::from_static("upload-record");
pub(super) const METHOD_OVERRIDE: HeaderName = HeaderName::from_static("x-http-method-override");

/// Whether the body is an `application/offset+octet-stream`.
pub(super) fn is_offset_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(OFFSET_STREAM))
}

pub(super) fn bad(message: &str) -> ApiError {
    ApiError::from(TusError::bad_request(message))
}

/// A header as text, if present; 400 if it is not visible ASCII.
pub(super) fn text<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| bad(&format!("{name} is not ASCII text")))
        })
        .transpose()
}

/// A header holding a non-negative integer, if present; 400 otherwise.
pub(super) fn number(headers: &HeaderMap, name: &HeaderName) -> Result<Option<u64>, ApiError> {
    text(headers, name)?
        .map(|v| {
            // Digits only: no sign, no spaces, no `+5`.
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(&format!("{name} must be a non-negative integer")));
            }
            v.parse()
                .map_err(|_| bad(&format!("{name} is out of range")))
        })
        .transpose()
}

pub(super) fn checksum(headers: &HeaderMap) -> Result<Option<Checksum>, ApiError> {
    Ok(text(headers, &UPLOAD_CHECKSUM)?
        .map(Checksum::parse)
        .transpose()?)
}

/// `Upload-Concat`: `partial`, or `final;` and the parts' URLs (absolute or
/// paths) separated by spaces.
pub(super) fn concat(header: Option<&str>) -> Result<Concat, ApiError> {
    let Some(header) = header else {
        return Ok(Concat::None);
    };
    if header.trim() == "partial" {
        return Ok(Concat::Partial);
    }
    let Some(urls) = header.trim().strip_prefix("final;") else {
        return Err(bad("Upload-Concat must be `partial` or `final;URL URL…`"));
    };
    let parts = urls
        .split_whitespace()
        .map(|url| {
            let path = url
                .split_once("://")
                .map_or(url, |(_, rest)| rest.find('/').map_or("", |at| &rest[at..]));
            path.strip_prefix(BASE)
                .and_then(|p| p.strip_prefix('/'))
                .filter(|id| valid_id(id))
                .map(str::to_string)
                .ok_or_else(|| {
                    bad(&format!(
                        "Upload-Concat: `{url}` is not an upload URL of this server"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Concat::Final(parts))
}

pub(super) fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

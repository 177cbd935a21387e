//! Stored bytes: an upload's content and its derived artifacts, with
//! ranges and (for content) an ETag.

use std::ops::Range;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::extract::ApiPath;
use super::{ApiError, AppState};
use crate::auth::Client;
use crate::upload::{UploadError, keys};

/// The object routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_content))
        .routes(routes!(get_derived))
}

/// The stored bytes of an upload (`Range`, `If-None-Match` with its ETag).
#[utoipa::path(get, path = "/v1/uploads/{id}/content", tag = "uploads", security(("api_key" = [])),
    params(("id" = String, Path, description = "the upload's id (32 hex digits)")),
    responses(
        (status = 200, description = "the bytes, with their type and ETag"), (status = 206, description = "a range"),
        (status = 304, description = "not modified"), (status = 404, description = "no such upload for this client"),
        (status = 416, description = "a range past the end"),
    ))]
async fn get_content(
    State(state): State<AppState>,
    Caller(client): Caller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    content(&state, &client, &id, &headers).await
}

/// The content of upload `id` of `client` (also served at its tus URL).
pub(super) async fn content(
    state: &AppState,
    client: &Client,
    id: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let record = state.running.service.record(client, id).await?;
    let etag = format!("\"{}\"", record.sha256);
    serve_object(
        state,
        &keys::content(id),
        &record.upload.content_type,
        record.size,
        Some(&etag),
        headers,
    )
    .await
}

/// An artifact a post-store plugin derived from an upload (a thumbnail).
#[utoipa::path(get, path = "/v1/uploads/{id}/derived/{name}", tag = "uploads", security(("api_key" = [])),
    params(("id" = String, Path, description = "the upload's id (32 hex digits)"), ("name" = String, Path, description = "the artifact's name, as in the record")),
    responses((status = 200, description = "the bytes"), (status = 206, description = "a range"), (status = 404, description = "no such upload or artifact")))]
async fn get_derived(
    State(state): State<AppState>,
    Caller(client): Caller,
    ApiPath((id, name)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let record = state.running.service.record(&client, &id).await?;
    let derived = record
        .derived
        .iter()
        .find(|d| d.name == name)
        .ok_or(UploadError::NotFound)?;
    serve_object(
        &state,
        &keys::derived(&id, &name),
        &derived.content_type,
        derived.size,
        None,
        &headers,
    )
    .await
}

async fn serve_object(
    state: &AppState,
    key: &str,
    content_type: &str,
    size: u64,
    etag: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    if let (Some(etag), Some(inm)) = (etag, headers.get(header::IF_NONE_MATCH))
        && inm
            .to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag.to_string())]).into_response());
    }
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(spec) => match parse_range(spec, size) {
            RangeSpec::Satisfiable(range) => Some(range),
            RangeSpec::Unsatisfiable => {
                return Ok((
                    [(header::CONTENT_RANGE, format!("bytes */{size}"))],
                    ApiError::from(UploadError::RangeNotSatisfiable { size }),
                )
                    .into_response());
            }
            RangeSpec::Ignored => None,
        },
        None => None,
    };
    let object = state
        .running
        .service
        .open_object(key, range.clone())
        .await?;
    let metrics = Arc::clone(&state.running.metrics);
    let body = Body::from_stream(object.body.inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            metrics.bytes_out(chunk.len() as u64);
        }
    }));
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, header_value(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(object.len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Uploaded bytes are untrusted: an HTML or SVG upload opened from this
    // origin must not run script in it.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    if let Some(etag) = etag {
        h.insert(header::ETAG, header_value(etag));
    }
    if let Some(range) = range {
        let end = range.start + object.len;
        h.insert(
            header::CONTENT_RANGE,
            header_value(&format!(
                "bytes {}-{}/{}",
                range.start,
                end.saturating_sub(1),
                object.total_size
            )),
        );
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    Ok(response)
}

fn header_value(value: &str) -> HeaderValue {
    HeaderValue::from_str(value)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

enum RangeSpec {
    Satisfiable(Range<u64>),
    Unsatisfiable,
    /// Malformed or multi-range: serve the whole object (RFC 9110 allows it).
    Ignored,
}

/// Parses a single `bytes=` range against an object of `size` bytes.
fn parse_range(spec: &str, size: u64) -> RangeSpec {
    let Some(spec) = spec.trim().strip_prefix("bytes=") else {
        return RangeSpec::Ignored;
    };
    if spec.contains(',') {
        return RangeSpec::Ignored;
    }
    let Some((start, end)) = spec.split_once('-') else {
        return RangeSpec::Ignored;
    };
    let (start, end) = (start.trim(), end.trim());
    let parsed = match (start.is_empty(), end.is_empty()) {
        (true, false) => end
            .parse::<u64>()
            .ok()
            .map(|n| (size.saturating_sub(n), size)),
        (false, true) => start.parse::<u64>().ok().map(|s| (s, size)),
        (false, false) => match (start.parse::<u64>(), end.parse::<u64>()) {
            (Ok(s), Ok(e)) if e >= s => Some((s, e.saturating_add(1).min(size))),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => RangeSpec::Ignored,
        Some((start, end)) if start >= size || start >= end => RangeSpec::Unsatisfiable,
        Some((start, end)) => RangeSpec::Satisfiable(start..end),
    }
}

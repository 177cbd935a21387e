//! The HTTP API (JSON, under `/v1`), plus health, readiness and metrics.

mod error;
mod extract;
mod server;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Multipart, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub use self::error::ApiError;
use self::extract::{ApiPath, ApiQuery};
pub use self::server::{ConnectionLimits, serve};
use crate::admin::Admin;
use crate::cache::CacheBackend;
use crate::metrics::Metrics;
use crate::upload::{Admission, Client, Ingested, UploadError, UploadRecord, UploadService, keys};

/// How long `?wait=true` waits for post-store hooks.
const WAIT_FOR_DERIVED: Duration = Duration::from_secs(30);

/// Who may call the API; swapped whole on reload.
pub struct Auth {
    clients: RwLock<Clients>,
}

struct Clients {
    by_key_digest: HashMap<[u8; 32], Client>,
    anonymous: Option<Client>,
}

impl Auth {
    /// Clients identified by API key.
    pub fn with_keys(clients: impl IntoIterator<Item = (String, Client)>) -> Self {
        let by_key_digest = clients
            .into_iter()
            .map(|(key, client)| (digest(&key), client))
            .collect();
        Self::from(Clients {
            by_key_digest,
            anonymous: None,
        })
    }

    /// No keys: every request acts as `client` (loopback-only deployments).
    pub fn open(client: Client) -> Self {
        Self::from(Clients {
            by_key_digest: HashMap::new(),
            anonymous: Some(client),
        })
    }

    fn from(clients: Clients) -> Self {
        Self {
            clients: RwLock::new(clients),
        }
    }

    /// Takes the clients of `other` (a reloaded configuration).
    pub fn replace_with(&self, other: Auth) {
        let clients = other
            .clients
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        *self.clients.write().unwrap_or_else(PoisonError::into_inner) = clients;
    }

    fn client(&self, headers: &HeaderMap) -> Result<Client, ApiError> {
        let clients = self.clients.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = &clients.anonymous {
            return Ok(client.clone());
        }
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(ApiError::unauthorized)?;
        // Looked up by digest so the key never sits in a comparison.
        clients
            .by_key_digest
            .get(&digest(token))
            .cloned()
            .ok_or_else(ApiError::unauthorized)
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The pipeline.
    pub service: Arc<UploadService>,
    /// API clients.
    pub auth: Arc<Auth>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The plugins' cache backend, for readiness.
    pub cache: Arc<dyn CacheBackend>,
    /// Operator operations.
    pub admin: Arc<Admin>,
    /// SHA-256 of the admin token; `None` disables the admin API.
    pub admin_token: Option<[u8; 32]>,
}

/// SHA-256 of a token, the form in which tokens are compared.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// The caller holds the admin token.
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(expected) = state.admin_token else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_disabled",
                "the admin API is disabled: set admin.token or AIRLOCK_ADMIN_TOKEN",
            ));
        };
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match token {
            Some(token) if digest(token) == expected => Ok(Operator),
            _ => Err(ApiError::unauthorized()),
        }
    }
}

/// The caller, authenticated.
pub struct Caller(pub Client);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.auth.client(&parts.headers).map(Caller)
    }
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/uploads", post(create_upload))
        .route("/v1/uploads/{id}", get(get_record).delete(delete_upload))
        .route("/v1/uploads/{id}/content", get(get_content))
        .route("/v1/uploads/{id}/derived/{name}", get(get_derived))
        .route("/admin/plugins", get(admin_plugins))
        .route("/admin/plugins/{name}/enable", post(admin_enable))
        .route("/admin/plugins/{name}/disable", post(admin_disable))
        .route("/admin/reload", post(admin_reload))
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method (see Allow)",
            )
        })
        // Bodies are streamed and limited per client by the pipeline.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn(trace_request))
        .with_state(state)
}

async fn trace_request(request: Request, next: Next) -> Response {
    let span =
        tracing::info_span!("request", method = %request.method(), path = %request.uri().path());
    let started = Instant::now();
    let response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "done"
        );
    });
    response
}

#[derive(Deserialize)]
struct CreateQuery {
    filename: Option<String>,
    #[serde(default)]
    wait: bool,
}

async fn create_upload(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    query: Result<ApiQuery<CreateQuery>, ApiError>,
    request: Request,
) -> Response {
    let started = Instant::now();
    // Who is asking comes before anything else about the request.
    let result = match (caller, query) {
        (Ok(Caller(client)), Ok(ApiQuery(query))) => {
            receive_upload(&state, &client, query, request).await
        }
        (Err(err), _) | (Ok(_), Err(err)) => Err(err),
    };
    let response = match result {
        Ok(body) => (StatusCode::CREATED, Json(body)).into_response(),
        Err(err) => err.into_response(),
    };
    state
        .metrics
        .upload(response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

async fn receive_upload(
    state: &AppState,
    client: &Client,
    query: CreateQuery,
    request: Request,
) -> Result<Value, ApiError> {
    let declared_len = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared_len
        && len > client.max_body_bytes.saturating_add(64 << 10)
    {
        // Refuse before reading; the slack allows for multipart framing.
        return Err(UploadError::TooLarge {
            limit: client.max_body_bytes,
        }
        .into());
    }
    let admission = state.service.admit(client)?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    if content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        let mut multipart = Multipart::from_request(request, &())
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let mut records = Vec::new();
        if let Err(err) = receive_parts(
            state,
            &admission,
            client,
            &mut multipart,
            &mut records,
            query.wait,
        )
        .await
        {
            // All or nothing: a request that fails part-way leaves no upload
            // behind that its client never learnt the id of.
            for record in &records {
                let _ = state.service.delete(client, &record.id).await;
            }
            return Err(err);
        }
        if records.is_empty() {
            return Err(ApiError::bad_request("multipart body has no file part"));
        }
        Ok(json!({ "uploads": records }))
    } else {
        let filename = query.filename.clone().unwrap_or_else(|| "upload".into());
        let body = request.into_body().into_data_stream();
        let ingested = state
            .service
            .ingest(&admission, client, &filename, &content_type, body)
            .await?;
        Ok(serde_json::to_value(finish(ingested, query.wait).await).unwrap_or_default())
    }
}

/// Stores each file part of `multipart`, appending its record to `records`.
async fn receive_parts(
    state: &AppState,
    admission: &Admission,
    client: &Client,
    multipart: &mut Multipart,
    records: &mut Vec<UploadRecord>,
    wait: bool,
) -> Result<(), ApiError> {
    // The body limit covers the whole request: each file gets what the
    // files before it left.
    let mut remaining = client.clone();
    while let Some(field) = admission
        .body_read(multipart.next_field())
        .await?
        .map_err(|e| ApiError::bad_request(e.body_text()))?
    {
        // Plain form fields are not files.
        let Some(filename) = field.file_name().map(str::to_string) else {
            continue;
        };
        let part_type = field
            .content_type()
            .unwrap_or("application/octet-stream")
            .to_string();
        let ingested = state
            .service
            .ingest(admission, &remaining, &filename, &part_type, field)
            .await?;
        remaining.max_body_bytes = remaining.max_body_bytes.saturating_sub(ingested.received);
        records.push(finish(ingested, wait).await);
    }
    Ok(())
}

/// The record to return: at once, or after post-store hooks with `wait`.
async fn finish(ingested: Ingested, wait: bool) -> UploadRecord {
    match (wait, ingested.post_store_done) {
        (true, Some(done)) => match tokio::time::timeout(WAIT_FOR_DERIVED, done).await {
            Ok(Ok(record)) => record,
            _ => ingested.record,
        },
        _ => ingested.record,
    }
}

async fn get_record(
    State(state): State<AppState>,
    Caller(client): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<UploadRecord>, ApiError> {
    Ok(Json(state.service.record(&client, &id).await?))
}

async fn delete_upload(
    State(state): State<AppState>,
    Caller(client): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.service.delete(&client, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_content(
    State(state): State<AppState>,
    Caller(client): Caller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let record = state.service.record(&client, &id).await?;
    let etag = format!("\"{}\"", record.sha256);
    serve_object(
        &state,
        &keys::content(&id),
        &record.content_type,
        record.size,
        Some(&etag),
        &headers,
    )
    .await
}

async fn get_derived(
    State(state): State<AppState>,
    Caller(client): Caller,
    ApiPath((id, name)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let record = state.service.record(&client, &id).await?;
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
        .service
        .store()
        .get(key, range.clone())
        .await
        .map_err(UploadError::from)?;
    let metrics = Arc::clone(&state.metrics);
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

async fn ready(State(state): State<AppState>) -> Response {
    const PROBE: Duration = Duration::from_secs(2);
    let storage = match tokio::time::timeout(PROBE, state.service.store().ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{:#}", anyhow::Error::new(e))),
        Err(_) => Err("no answer within 2 s".to_string()),
    };
    let cache = match tokio::time::timeout(PROBE, state.cache.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{:#}", anyhow::Error::new(e))),
        Err(_) => Err("no answer within 2 s".to_string()),
    };
    let describe = |kind: &str, r: &Result<(), String>| match r {
        Ok(()) => json!({ "backend": kind, "status": "ok" }),
        Err(e) => json!({ "backend": kind, "status": "unavailable", "error": e }),
    };
    let status = if storage.is_ok() && cache.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "storage": describe(state.service.store().kind(), &storage),
        "cache": describe(state.cache.kind(), &cache),
    });
    (status, Json(body)).into_response()
}

async fn admin_plugins(State(state): State<AppState>, _: Operator) -> Json<Value> {
    Json(json!({ "plugins": state.admin.plugins().await }))
}

async fn admin_enable(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    state.admin.enable(&name).await?;
    Ok(Json(json!({ "plugin": name, "state": "active" })))
}

async fn admin_disable(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    state.admin.disable(&name).await?;
    Ok(Json(json!({ "plugin": name, "state": "disabled" })))
}

async fn admin_reload(State(state): State<AppState>, _: Operator) -> Result<Json<Value>, ApiError> {
    let report = state.admin.reload().await?;
    Ok(Json(json!({
        "reloaded": true,
        "plugins": report.plugins,
        "clients": report.clients,
        "restart_needed": report.restart_needed,
    })))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

//! Uploads: create (raw body or multipart), read the record, delete.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::extract::{ApiPath, ApiQuery};
use super::{ApiError, AppState};
use crate::auth::Client;
use crate::upload::{Batch, Ingested, UploadError, UploadRecord};

/// How long `?wait=true` waits for post-store hooks.
const WAIT_FOR_DERIVED: Duration = Duration::from_secs(30);

/// The upload routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_upload))
        .routes(routes!(get_record, delete_upload))
}

#[derive(Deserialize)]
struct CreateQuery {
    filename: Option<String>,
    #[serde(default)]
    wait: bool,
}

/// Uploads one file (the raw body, its name in `filename`) or several
/// (`multipart/form-data`, all stored or none).
#[utoipa::path(post, path = "/v1/uploads", tag = "uploads", security(("api_key" = [])),
    params(
        ("filename" = Option<String>, Query, description = "the file's name (raw body)"),
        ("wait" = Option<bool>, Query, description = "answer after the post-store plugins ran"),
    ),
    request_body(content_type = "*/*", description = "the file, or multipart/form-data with file parts"),
    responses(
        (status = 201, description = "the record (raw body), or `{\"uploads\": [records]}` (multipart)"),
        (status = 400, description = "malformed body"), (status = 401, description = "no or unknown key"),
        (status = 408, description = "the body stalled or ran past its deadline"),
        (status = 413, description = "over the client's size limit"), (status = 415, description = "a type the client may not send"),
        (status = 422, description = "a processor rejected it"), (status = 429, description = "too many uploads of this client open"),
        (status = 503, description = "a fail-closed plugin failed, or storage is down"),
    ))]
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
        .running
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
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let mut batch = state.running.service.batch(client)?;
    let multipart = content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data");
    if multipart {
        let mut multipart = Multipart::from_request(request, &())
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        // All or nothing: what the batch stored is removed if a later part
        // fails, whether the pipeline refused it or the body was malformed.
        if let Err(err) = receive_parts(&mut batch, &mut multipart).await {
            batch.abort().await;
            return Err(err);
        }
        let stored = batch.finish();
        if stored.is_empty() {
            return Err(ApiError::bad_request("multipart body has no file part"));
        }
        let mut records = Vec::with_capacity(stored.len());
        for ingested in stored {
            records.push(finish(state, ingested, query.wait).await);
        }
        let records = serde_json::to_value(records)
            .map_err(|e| ApiError::internal(format!("serializing records: {e}")))?;
        Ok(json!({ "uploads": records }))
    } else {
        let filename = query.filename.as_deref().unwrap_or("upload");
        let body = request.into_body().into_data_stream();
        batch.add(filename, &content_type, body).await?;
        let ingested = batch
            .finish()
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::internal("an upload of one file stored none"))?;
        let record = finish(state, ingested, query.wait).await;
        serde_json::to_value(record)
            .map_err(|e| ApiError::internal(format!("serializing a record: {e}")))
    }
}

/// Stores each file part of `multipart` in `batch`.
async fn receive_parts(batch: &mut Batch<'_>, multipart: &mut Multipart) -> Result<(), ApiError> {
    while let Some(field) = batch
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
        batch.add(&filename, &part_type, field).await?;
    }
    Ok(())
}

/// The record to return: at once, or after post-store hooks with `wait`.
async fn finish(state: &AppState, ingested: Ingested, wait: bool) -> UploadRecord {
    if wait {
        state
            .running
            .service
            .settled(ingested.record, WAIT_FOR_DERIVED)
            .await
    } else {
        ingested.record
    }
}

/// The record of an upload.
#[utoipa::path(get, path = "/v1/uploads/{id}", tag = "uploads", security(("api_key" = [])),
    params(("id" = String, Path, description = "the upload's id (32 hex digits)")),
    responses((status = 200, description = "the record"), (status = 404, description = "no such upload for this client")))]
async fn get_record(
    State(state): State<AppState>,
    Caller(client): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<UploadRecord>, ApiError> {
    Ok(Json(state.running.service.record(&client, &id).await?))
}

/// Deletes an upload, its content and what was derived from it.
#[utoipa::path(delete, path = "/v1/uploads/{id}", tag = "uploads", security(("api_key" = [])),
    params(("id" = String, Path, description = "the upload's id (32 hex digits)")),
    responses((status = 204, description = "deleted"), (status = 404, description = "no such upload for this client")))]
async fn delete_upload(
    State(state): State<AppState>,
    Caller(client): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.running.service.delete(&client, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

//! For the platform: liveness, readiness and Prometheus metrics.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::text::chain;

/// The health, metrics and API description routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(alive))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .routes(routes!(openapi))
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "`{\"status\":\"ok\"}`")))]
async fn alive() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: storage and cache answer.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "storage and cache answer"),
    (status = 503, description = "one of them does not; the body says which and why"),
))]
async fn ready(State(state): State<AppState>) -> Response {
    const PROBE: Duration = Duration::from_secs(2);
    let storage = match tokio::time::timeout(PROBE, state.running.service.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(chain(&e)),
        Err(_) => Err("no answer within 2 s".to_string()),
    };
    let cache = match tokio::time::timeout(PROBE, state.running.cache.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(chain(&e)),
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
        "storage": describe(state.running.service.storage_kind(), &storage),
        "cache": describe(state.running.cache.kind(), &cache),
    });
    (status, Json(body)).into_response()
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.running.metrics.encode(),
    )
}

/// This description of the HTTP API (OpenAPI 3.1), generated from the
/// handlers that serve it.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "the OpenAPI document", content_type = "application/json")))]
async fn openapi() -> Response {
    static JSON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let json = JSON.get_or_init(|| super::openapi::openapi().to_json().unwrap_or_default());
    ([(header::CONTENT_TYPE, "application/json")], json.as_str()).into_response()
}

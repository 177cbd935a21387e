//! For the platform: liveness, readiness and Prometheus metrics.

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;
use crate::text::chain;

/// The health and metrics routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
}

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

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.running.metrics.encode(),
    )
}

//! The HTTP API (JSON, under `/v1`), the admin API, health, readiness and
//! metrics; each area has its own `router()`, merged here.

mod admin;
mod auth;
mod error;
mod extract;
mod objects;
mod ops;
mod run;
mod server;
mod uploads;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;

pub use self::error::ApiError;
pub use self::run::{bind, run};
pub use self::server::{ConnectionLimits, serve};
use crate::admin::{Admin, Running};
use crate::app::App;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// What runs: pipeline, clients, cache, metrics.
    pub running: Arc<Running>,
    /// Operator operations.
    pub admin: Arc<Admin>,
    /// SHA-256 of the admin token; `None` disables the admin API.
    pub admin_token: Option<[u8; 32]>,
}

impl From<&App> for AppState {
    fn from(app: &App) -> Self {
        Self {
            running: Arc::clone(&app.running),
            admin: Arc::clone(&app.admin),
            admin_token: app.admin_token,
        }
    }
}

/// Every route of the service.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(uploads::router())
        .merge(objects::router())
        .merge(admin::router())
        .merge(ops::router())
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

//! The HTTP API (JSON, under `/v1`), the admin API, health, readiness and
//! metrics; each area has its own `router()`, merged here.

mod admin;
mod auth;
mod cors;
mod error;
mod extract;
mod objects;
mod openapi;
mod ops;
mod pages;
mod run;
mod server;
mod tus;
mod uploads;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

pub use self::error::ApiError;
pub use self::openapi::openapi;
pub use self::run::{bind, run};
pub use self::server::{ConnectionLimits, serve};
use crate::admin::{Admin, Running};
use crate::app::App;

/// Largest request head (URI and headers) the service takes.
pub const MAX_HEAD_BYTES: usize = 64 << 10;

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
    let cors = state.running.config.server.cors.clone();
    let (routes, _) = openapi::areas().split_for_parts();
    let routes = routes
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
        .layer(middleware::from_fn(limit_head))
        .layer(middleware::from_fn(trace_request))
        .with_state(state);
    // Before routing: it changes the method a request is routed by.
    let router = Router::new()
        .fallback_service(routes)
        .layer(middleware::map_request(tus::method_override));
    // Outermost: preflights are answered before anything else, and every
    // answer to an allowed origin, errors included, carries the CORS
    // headers.
    cors::apply(router, &cors)
}

/// Refuses a request whose head is over [`MAX_HEAD_BYTES`] with 431.
async fn limit_head(request: Request, next: Next) -> Response {
    let uri = request.uri();
    let head = uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |pq| pq.as_str().len())
        + request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    if head > MAX_HEAD_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "header_too_large",
            format!("the request head is {head} bytes; at most {MAX_HEAD_BYTES} are taken"),
        )
        .into_response();
    }
    next.run(request).await
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

//! Cross-origin requests: browsers on the origins in `[server.cors]` may
//! call every route, and read the headers a client needs (the tus ones,
//! `Location`, `ETag`, `Content-Range`, `Retry-After`). Preflights are
//! answered by `tower-http`'s layer, before routing and authentication.
//! Only requests from an allowed origin go through it: another origin gets
//! no CORS header at all (the layer would still add some), and an OPTIONS
//! that is not a preflight (a tus client asking what the server supports;
//! browsers only send OPTIONS as preflights) reaches its route.

use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, header};
use tower::ServiceExt;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::CorsConfig;

/// `router` with CORS for the origins of `config` (unchanged if none).
pub fn apply(router: Router, config: &CorsConfig) -> Router {
    let Some(cors) = layer(config) else {
        return router;
    };
    let any = config.allowed_origins.iter().any(|o| o == "*");
    let origins: Vec<HeaderValue> = config
        .allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let with_cors = router.clone().layer(cors);
    Router::new().fallback_service(tower::service_fn(move |request: Request| {
        let allowed = request
            .headers()
            .get(header::ORIGIN)
            .is_some_and(|origin| any || origins.contains(origin));
        let preflight_or_not_options = request.method() != Method::OPTIONS
            || request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        let cors = allowed && preflight_or_not_options;
        let target = if cors {
            with_cors.clone()
        } else {
            router.clone()
        };
        async move {
            let mut response = target.oneshot(request).await?;
            if !cors {
                // The answer depends on the origin: a cache must not hand
                // this one to a page of an allowed origin (the layer says
                // so itself on the answers it makes).
                response
                    .headers_mut()
                    .append(header::VARY, HeaderValue::from_static("origin"));
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    }))
}

/// Request headers a browser client may send.
const ALLOWED: &[&str] = &[
    "authorization",
    "content-type",
    "range",
    "if-none-match",
    "x-requested-with",
    "x-http-method-override",
    "tus-resumable",
    "upload-length",
    "upload-offset",
    "upload-metadata",
    "upload-defer-length",
    "upload-concat",
    "upload-checksum",
];

/// Response headers a browser client may read.
const EXPOSED: &[&str] = &[
    "location",
    "etag",
    "content-range",
    "content-length",
    "retry-after",
    "upload-offset",
    "upload-length",
    "upload-metadata",
    "upload-expires",
    "upload-defer-length",
    "upload-concat",
    "upload-record",
    "tus-resumable",
    "tus-version",
    "tus-extension",
    "tus-max-size",
    "tus-checksum-algorithm",
];

/// The CORS layer for `config`; `None` when no origin is allowed.
fn layer(config: &CorsConfig) -> Option<CorsLayer> {
    if config.allowed_origins.is_empty() {
        return None;
    }
    let origins = if config.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Checked by the config's validation; one that is not a header
        // value could never match an `Origin` anyway.
        AllowOrigin::list(
            config
                .allowed_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    let names = |names: &[&'static str]| -> Vec<HeaderName> {
        names.iter().map(|n| HeaderName::from_static(n)).collect()
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers(names(ALLOWED))
            .expose_headers(names(EXPOSED))
            .max_age(Duration::from_secs(config.max_age_seconds)),
    )
}

//! The upload page (`/`) and the operator dashboard (`/admin`), bundled by
//! `build.rs` (Uppy and the page scripts, by esbuild) and served from the
//! binary, so they work offline. Both call only the public and admin APIs,
//! from this origin or the one given in `?api=`.

use std::sync::LazyLock;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiPath;
use super::{ApiError, AppState};

/// What the pages may load: scripts, styles and images from this origin
/// only (images also from `blob:`, as the upload page shows thumbnails it
/// fetched with the API key), calls to any API origin (`?api=`), and no
/// framing, forms or plugins.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; connect-src *; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One bundled file, as is and gzipped (by `build.rs`).
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    gzip: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!(env!("OUT_DIR"), "/web/", $name)),
            gzip: include_bytes!(concat!(env!("OUT_DIR"), "/web/", $name, ".gz")),
        }
    };
}

/// The pages first, then what `/assets/` serves.
static ASSETS: [Asset; 6] = [
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("admin.html", "text/html; charset=utf-8"),
    asset!("upload.js", "text/javascript; charset=utf-8"),
    asset!("upload.css", "text/css; charset=utf-8"),
    asset!("admin.js", "text/javascript; charset=utf-8"),
    asset!("admin.css", "text/css; charset=utf-8"),
];

/// Strong ETags per asset (SHA-256 of its bytes), as is and gzipped (a
/// different representation, so a different tag), in [`ASSETS`] order.
static ETAGS: LazyLock<Vec<(HeaderValue, HeaderValue)>> = LazyLock::new(|| {
    let tag = |bytes: &[u8], suffix: &str| {
        let hash = hex::encode(&Sha256::digest(bytes)[..16]);
        HeaderValue::from_str(&format!("\"{hash}{suffix}\""))
            .unwrap_or(HeaderValue::from_static("\"\""))
    };
    ASSETS
        .iter()
        .map(|asset| (tag(asset.body, ""), tag(asset.body, "-gzip")))
        .collect()
});

/// Whether the request takes gzip (`Accept-Encoding`, not refused with
/// `q=0`).
fn takes_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// The page routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload_page))
        .routes(routes!(dashboard))
        .routes(routes!(asset))
}

/// The upload page: Uppy's Dashboard over tus, then each upload's record.
#[utoipa::path(get, path = "/", tag = "pages",
    params(("api" = Option<String>, Query, description = "the API's origin, when it is not this one (it must allow this page's origin in `[server.cors]`)")),
    responses(
        (status = 200, description = "the page", content_type = "text/html"),
        (status = 304, description = "unchanged (`If-None-Match`)"),
        (status = 404, description = "the pages are turned off (`server.pages = false`)"),
    ))]
async fn upload_page(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(&state, "index.html", &headers)
}

/// The operator dashboard: plugin states, budgets and counters, live; it
/// asks for the admin token and calls the admin API with it.
#[utoipa::path(get, path = "/admin", tag = "pages",
    params(("api" = Option<String>, Query, description = "the API's origin, when it is not this one")),
    responses(
        (status = 200, description = "the page", content_type = "text/html"),
        (status = 304, description = "unchanged (`If-None-Match`)"),
        (status = 404, description = "the pages are turned off (`server.pages = false`)"),
    ))]
async fn dashboard(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(&state, "admin.html", &headers)
}

/// A script or style sheet of the pages.
#[utoipa::path(get, path = "/assets/{name}", tag = "pages",
    params(("name" = String, Path, description = "`upload.js`, `upload.css`, `admin.js` or `admin.css`")),
    responses(
        (status = 200, description = "the file"),
        (status = 304, description = "unchanged (`If-None-Match`)"),
        (status = 404, description = "no such file, or the pages are turned off"),
    ))]
async fn asset(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if name.ends_with(".html") {
        return Err(not_found(&name));
    }
    serve(&state, &name, &headers)
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no page asset `{name}`"),
    )
}

fn serve(state: &AppState, name: &str, request: &HeaderMap) -> Result<Response, ApiError> {
    if !state.running.config.server.pages {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "the pages are turned off (server.pages = false)",
        ));
    }
    let index = ASSETS
        .iter()
        .position(|a| a.name == name)
        .ok_or_else(|| not_found(name))?;
    let asset = &ASSETS[index];
    let gzip = takes_gzip(request);
    let (plain_tag, gzip_tag) = &ETAGS[index];
    let etag = if gzip { gzip_tag } else { plain_tag };
    let unchanged = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|t| t.trim() == "*" || t.trim().as_bytes() == etag.as_bytes())
        });
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else if gzip {
        (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CONTENT_ENCODING, "gzip"),
            ],
            asset.gzip,
        )
            .into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, etag.clone());
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    // Revalidated each time (a cheap 304): a new binary's pages show at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.content_type.starts_with("text/html") {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    Ok(response)
}

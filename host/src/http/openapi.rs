//! The OpenAPI description of the HTTP API: each area's `router()`
//! registers its handlers with their `#[utoipa::path]` descriptions, so the
//! document is made from what is served and cannot drift from it.

use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

use super::AppState;

/// The documented routes of every area (each area's `router()` registers
/// a handler together with its OpenAPI description).
pub(super) fn areas() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(super::uploads::router())
        .merge(super::tus::router())
        .merge(super::objects::router())
        .merge(super::admin::router())
        .merge(super::ops::router())
        .merge(super::pages::router())
}

/// The OpenAPI description of the whole API (served at `/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    areas().split_for_parts().1
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Airlock", description = "File uploads (one-shot and tus 1.0.0 resumable) run through sandboxed WebAssembly plugins; the operators' API."),
    modifiers(&Security),
)]
struct ApiDoc;

/// The two Bearer schemes: API keys and the admin token.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let bearer = |what: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(what))
                    .build(),
            )
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("api_key", bearer("an API client's key (`[[clients]]`)"));
        components.add_security_scheme("admin_token", bearer("the admin token (`admin.token`)"));
    }
}

//! The operators' API: plugin states and counters, enable / disable,
//! reload. Every route needs the admin token.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Operator;
use super::extract::ApiPath;
use super::{ApiError, AppState};

/// The admin routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin_plugins))
        .routes(routes!(admin_set_state))
        .routes(routes!(admin_reload))
}

/// Every plugin: hook, state, budget, counters, last violation.
#[utoipa::path(get, path = "/admin/plugins", tag = "admin", security(("admin_token" = [])), responses(
    (status = 200, description = "`{\"plugins\": [...]}`"),
    (status = 401, description = "no or wrong admin token"),
    (status = 403, description = "the admin API is disabled"),
))]
async fn admin_plugins(State(state): State<AppState>, _: Operator) -> Json<Value> {
    Json(json!({ "plugins": state.admin.plugins().await }))
}

/// `enable` or `disable` a plugin (enabling lifts a quarantine).
#[utoipa::path(post, path = "/admin/plugins/{name}/{action}", tag = "admin", security(("admin_token" = [])),
    params(("name" = String, Path, description = "the plugin"), ("action" = String, Path, description = "`enable` or `disable`")),
    responses(
        (status = 200, description = "the plugin's new state"),
        (status = 404, description = "no such plugin, or an action that is neither"),
    ))]
async fn admin_set_state(
    State(state): State<AppState>,
    _: Operator,
    ApiPath((name, action)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (enabled, now) = match action.as_str() {
        "enable" => (true, "active"),
        "disable" => (false, "disabled"),
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route",
            ));
        }
    };
    state.admin.set_enabled(&name, enabled).await?;
    Ok(Json(json!({ "plugin": name, "state": now })))
}

/// Reloads the configuration (as SIGHUP does).
#[utoipa::path(post, path = "/admin/reload", tag = "admin", security(("admin_token" = [])), responses(
    (status = 200, description = "what changed"),
    (status = 422, description = "the new configuration was refused; the old one runs on"),
))]
async fn admin_reload(State(state): State<AppState>, _: Operator) -> Result<Json<Value>, ApiError> {
    let report = state.admin.reload().await?;
    Ok(Json(json!({
        "reloaded": true,
        "plugins": report.plugins,
        "clients": report.clients,
        "restart_needed": report.restart_needed,
    })))
}

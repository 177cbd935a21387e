//! The operators' API: plugin states and counters, enable / disable,
//! reload. Every route needs the admin token.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::auth::Operator;
use super::extract::ApiPath;
use super::{ApiError, AppState};

/// The admin routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/plugins", get(admin_plugins))
        .route("/admin/plugins/{name}/{action}", post(admin_set_state))
        .route("/admin/reload", post(admin_reload))
}

async fn admin_plugins(State(state): State<AppState>, _: Operator) -> Json<Value> {
    Json(json!({ "plugins": state.admin.plugins().await }))
}

/// `enable` or `disable`.
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

async fn admin_reload(State(state): State<AppState>, _: Operator) -> Result<Json<Value>, ApiError> {
    let report = state.admin.reload().await?;
    Ok(Json(json!({
        "reloaded": true,
        "plugins": report.plugins,
        "clients": report.clients,
        "restart_needed": report.restart_needed,
    })))
}

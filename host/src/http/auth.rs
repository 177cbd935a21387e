//! Who is calling: an API client by its key, or the operator by the admin
//! token, both as `Authorization: Bearer …`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};

use super::{ApiError, AppState};
use crate::auth::{Client, digest};

/// The bearer token of a request, if it has one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// The caller, an authenticated API client.
pub struct Caller(pub Client);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state
            .running
            .clients
            .client(bearer(&parts.headers))
            .map(Caller)
            .ok_or_else(ApiError::unauthorized)
    }
}

/// The caller holds the admin token.
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(expected) = state.admin_token else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_disabled",
                "the admin API is disabled: set admin.token or AIRLOCK_ADMIN_TOKEN",
            ));
        };
        match bearer(&parts.headers) {
            Some(token) if digest(token) == expected => Ok(Operator),
            _ => Err(ApiError::unauthorized()),
        }
    }
}

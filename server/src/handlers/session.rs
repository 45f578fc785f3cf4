//! `POST /api/session` and `DELETE /api/session`: a browser's token as an `HttpOnly`
//! cookie, because `EventSource` cannot send an `Authorization` header.
//!
//! `POST` with `Authorization: Bearer <token>` checks the token and sets the cookie
//! `notify_hub_token` (`HttpOnly; SameSite=Strict`, expiring with the token; over HTTPS
//! `Secure` and named `__Host-notify_hub_token`); the page's streams then carry it by
//! themselves. `DELETE` clears it.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use axum_extra::extract::cookie::CookieJar;

use crate::auth::{self, Claims};
use crate::error::ApiError;
use crate::state::AppState;

/// The handler of `POST /api/session`: answers the token's claims and sets the cookie.
#[utoipa::path(post, path = "/api/session", tag = "auth",
    responses((status = 200, description = "The token's claims; the cookie is set", body = crate::auth::Claims), (status = "default", description = "Refused or failed, with the reason", body = common::ErrorBody)))]
pub async fn open(State(state): State<AppState>, parts: Parts) -> Result<Response, ApiError> {
    if !state.auth.enabled() {
        return Err(ApiError::bad_request(
            "this server checks no tokens: everything is open without a session",
        ));
    }
    let token = auth::bearer(&parts.headers).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "send the token as Authorization: Bearer <token>",
        )
        .header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    })?;
    let claims: Claims = state.auth.verify(&token)?;
    let max_age = claims.exp.saturating_sub(auth::expiry_in(Duration::ZERO));
    let jar = CookieJar::new().add(
        state
            .auth
            .session_cookie(Some(&token), Duration::from_secs(max_age)),
    );
    Ok((jar, Json(claims)).into_response())
}

/// The handler of `DELETE /api/session`: clears the cookie.
#[utoipa::path(delete, path = "/api/session", tag = "auth",
    responses((status = 204, description = "The cookie is cleared"), (status = "default", description = "Refused or failed, with the reason", body = common::ErrorBody)))]
pub async fn close(State(state): State<AppState>) -> Response {
    let jar = CookieJar::new().add(state.auth.session_cookie(None, Duration::ZERO));
    (StatusCode::NO_CONTENT, jar).into_response()
}

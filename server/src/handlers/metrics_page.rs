//! `GET /metrics`: the Prometheus text page of [`crate::metrics`], behind the metrics
//! token when one is set; without one, the page names no private stream.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::auth;
use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;

/// The handler of `GET /metrics`. With `--metrics-token`, the scraper must send it as
/// `Authorization: Bearer`, compared in constant time, so the answer's timing says nothing
/// of how much of a guess matched.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus metrics", content_type = "text/plain", body = String),
        (status = "default", description = "Refused or failed, with the reason", body = common::ErrorBody),
    ))]
pub async fn render(State(state): State<AppState>, request: Request) -> Response {
    if let Some(token) = &state.config.metrics_token {
        let sent = auth::bearer(request.headers()).unwrap_or_default();
        if !bool::from(sent.as_bytes().ct_eq(token.as_bytes())) {
            return ApiError::new(StatusCode::UNAUTHORIZED, "/metrics needs the metrics token")
                .header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
                .into_response();
        }
    }
    let overview = state.hub.overview().await.ok();
    metrics::store_up(state.hub.store_problem().is_none());
    // With a metrics token, only a scraper that showed it gets here: it may see every name.
    let authorised = state.config.metrics_token.is_some();
    metrics::record_states(
        state.stream_slots.open(),
        overview.as_ref().map(|streams| streams.as_slice()),
        |stream| !authorised && state.auth.is_private(stream),
    );
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(),
    )
        .into_response()
}

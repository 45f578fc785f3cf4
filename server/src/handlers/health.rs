//! `GET /healthz`: the process is up and serving, and whether its store takes publishes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::state::AppState;

/// `200 {"status":"ok","store":"ok",…}`, or `503 {"status":"degraded","store":"<why>",…}`
/// while the store cannot write (subscribers are still served then).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses(
        (status = 200, description = "Serving, the store writes", body = common::Health),
        (status = 503, description = "Serving, but the store cannot write", body = common::Health),
        (status = "default", description = "Refused or failed, with the reason", body = common::ErrorBody),
    ))]
pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<common::Health>) {
    let problem = state.hub.store_problem();
    let status = if problem.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let health = common::Health {
        status: if problem.is_some() { "degraded" } else { "ok" }.into(),
        store: problem.unwrap_or_else(|| "ok".into()),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    (status, Json(health))
}

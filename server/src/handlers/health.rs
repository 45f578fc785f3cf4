//! `GET /healthz`: the process is up and serving.

use axum::Json;

/// Answers `{"status":"ok","version":"…"}`.
pub async fn healthz() -> Json<common::Health> {
    Json(common::Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

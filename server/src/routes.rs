//! Every route of the server and the middleware around them, built in one place.

use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::{header, HeaderName, Method};
use axum::routing::get;
use axum::{Json, Router};
use common::paths;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::state::AppState;
use crate::{assets, notifications, sse, time};

/// Largest accepted request body: ample for a 200-character title and a 4,000-character body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The whole HTTP surface: SSE streams, API and the web app as fallback.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(paths::SSE_TIME, get(time::stream))
        .route(paths::EVENTS, get(notifications::events))
        .route(
            paths::NOTIFICATIONS,
            get(notifications::history).post(notifications::publish),
        )
        .route(
            paths::TRIGGER,
            get(notifications::trigger_get).post(notifications::trigger),
        )
        .route(paths::HEALTHZ, get(healthz))
        .fallback_service(assets::router(&state.config.assets))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(cors(&state.config.cors_origins))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .with_state(state)
}

/// Lets pages from other origins subscribe and publish (the seed pages opened from a file):
/// any origin, or only `origins` when given.
fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.is_empty() {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            HeaderName::from_static(sse::LAST_EVENT_ID),
        ])
}

/// `GET /healthz`: the process is up and serving.
async fn healthz(State(_): State<AppState>) -> Json<common::Health> {
    Json(common::Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

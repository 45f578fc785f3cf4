//! Every route of the server and the middleware around them, built in one place.

use axum::extract::State;
use axum::http::{header, HeaderName, Method};
use axum::routing::get;
use axum::{Json, Router};
use common::paths;
use tower_http::cors::{Any, CorsLayer};
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::state::AppState;
use crate::{assets, sse, time};

/// The whole HTTP surface: SSE streams, API and the web app as fallback.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(paths::SSE_TIME, get(time::stream))
        .route(paths::HEALTHZ, get(healthz))
        .fallback_service(assets::router(&state.config.assets))
        .layer(cors())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .with_state(state)
}

/// Lets pages from other origins subscribe and publish (the seed pages opened from a file).
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
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

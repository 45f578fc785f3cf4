//! Every route of the server and the middleware around them, built in one place.

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use axum::Router;
use common::paths;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::handlers::{
    event_stream, health, metrics_page, notification_api, session, streams_overview, time_stream,
};
use crate::state::AppState;
use crate::{assets, middleware, openapi, page_policy};

/// Largest accepted request body: ample for a 200-character title and a 4,000-character body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The paths of the long-lived streams: each holds one of the server's stream slots while
/// it is open, and over plain HTTP/1.1 is written by [`crate::http1_stream`].
pub const STREAM_PATHS: [&str; 3] = [paths::SSE_TIME, paths::EVENTS, paths::SSE_STREAMS];

/// The whole HTTP surface: SSE streams, API and the web app as fallback.
///
/// Every request is logged at `debug`: at `info`, a line per publish cost up to a quarter
/// of the acknowledged publishes a second in the publish benchmark. Failures (5xx) are
/// logged at `error`.
///
/// Every request goes through the same middleware ([`around`]); only the trace differs.
/// Streams get [`middleware::trace_stream`], everything else tower-http's `TraceLayer`, which also
/// wraps the response body and, on every poll of it, enters the request's span and reads
/// the clock twice: for an SSE stream that is every event, and it was 17 % of the
/// server's CPU in the fan-out benchmark (1,000 clock streams at 10 ms).
pub fn app(state: AppState) -> Router {
    let [time, events, overview] = STREAM_PATHS;
    let streams = Router::new()
        .route(time, get(time_stream::stream))
        .route(events, get(event_stream::subscribe))
        .route(overview, get(streams_overview::watch))
        .route_layer(from_fn_with_state(state.clone(), middleware::stream_slots));
    // Writing: each client within its publish rate, from the hub's own pages (or those
    // `--cors-origin` names).
    let publishing = Router::new()
        .route(
            paths::NOTIFICATIONS,
            get(notification_api::history).post(notification_api::publish),
        )
        .route(
            paths::TRIGGER,
            get(notification_api::trigger_get).post(notification_api::trigger),
        )
        .route_layer(from_fn_with_state(state.clone(), middleware::publish_rate))
        .route(paths::SESSION, post(session::open).delete(session::close))
        .route_layer(from_fn_with_state(
            state.clone(),
            middleware::same_origin_writes,
        ));
    let rest = Router::new()
        .merge(publishing)
        .route(paths::STREAMS, get(streams_overview::list))
        .route(paths::HEALTHZ, get(health::healthz))
        .route(paths::METRICS, get(metrics_page::render))
        .route(paths::OPENAPI, get(openapi::document))
        .fallback_service(assets::router(&state.config.assets));
    let rest = around(rest, &state)
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(middleware::request_span)
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
        .with_state(state.clone());
    around(streams, &state)
        .layer(from_fn(middleware::trace_stream))
        .with_state(state)
        .fallback_service(rest)
}

/// The middleware every request passes, outermost last.
fn around(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    routes
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.config.request_timeout,
        ))
        .layer(from_fn(middleware::json_errors))
        .layer(from_fn(middleware::count_requests))
        .layer(from_fn(middleware::request_size))
        .layer(from_fn(page_policy::every_response))
        .layer(middleware::cors(&state.config.cors_origins))
}

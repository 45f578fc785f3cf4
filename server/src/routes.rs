//! Every route of the server and the middleware around them, built in one place.

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use common::paths;
use tokio::time::Instant;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::{Instrument, Level};

use crate::handlers::{
    event_stream, health, metrics_page, notification_api, session, streams_overview, time_stream,
};
use crate::state::AppState;
use crate::{assets, auth, error, limits, metrics};

/// Largest accepted request body: ample for a 200-character title and a 4,000-character body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The whole HTTP surface: SSE streams, API and the web app as fallback.
///
/// Every request is logged at `debug`: at `info`, a line per publish cost up to a quarter
/// of the acknowledged publishes a second in the publish benchmark. Failures (5xx) are
/// logged at `error`.
///
/// Every request goes through the same middleware ([`around`]); only the trace differs.
/// Streams get [`trace_stream`], everything else tower-http's `TraceLayer`, which also
/// wraps the response body and, on every poll of it, enters the request's span and reads
/// the clock twice: for an SSE stream that is every event, and it was 17 % of the
/// server's CPU in the fan-out benchmark (1,000 clock streams at 10 ms).
pub fn app(state: AppState) -> Router {
    // Long-lived streams: each holds one of the server's stream slots while it is open.
    let streams = Router::new()
        .route(paths::SSE_TIME, get(time_stream::stream))
        .route(paths::EVENTS, get(event_stream::subscribe))
        .route(paths::SSE_STREAMS, get(streams_overview::watch))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            limits::stream_slots,
        ));
    // Publishing: each client within its rate.
    let publishing = Router::new()
        .route(
            paths::NOTIFICATIONS,
            get(notification_api::history).post(notification_api::publish),
        )
        .route(
            paths::TRIGGER,
            get(notification_api::trigger_get).post(notification_api::trigger),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            limits::publish_rate,
        ));
    let rest = Router::new()
        .merge(publishing)
        .route(paths::STREAMS, get(streams_overview::list))
        .route(paths::HEALTHZ, get(health::healthz))
        .route(paths::METRICS, get(metrics_page::render))
        .route(paths::SESSION, post(session::open).delete(session::close))
        .fallback_service(assets::router(&state.config.assets));
    let rest = around(rest, &state)
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
        .with_state(state.clone());
    around(streams, &state)
        .layer(middleware::from_fn(trace_stream))
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
        .layer(middleware::from_fn(error::json_errors))
        .layer(middleware::from_fn(metrics::count_requests))
        .layer(middleware::from_fn(limits::request_size))
        .layer(cors(&state.config.cors_origins))
}

/// The trace of a stream request: [`request_span`] around everything up to the response
/// head, then one line (target `server::routes`) with the status and how long the stream
/// took to start, `error` for a 5xx, else `debug`. The body, the stream itself, is left
/// as it is, so what is logged while it runs (a subscriber falling behind) names the
/// stream but is outside the request's span.
async fn trace_stream(request: Request, next: Next) -> Response {
    let span = request_span(&request);
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let (latency, status) = (started.elapsed(), response.status());
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::error!(?latency, status = status.as_u16(), "response failed");
        } else {
            tracing::debug!(
                ?latency,
                status = status.as_u16(),
                "finished processing request"
            );
        }
    });
    response
}

/// Longest URI a log line shows; the rest is cut (a 10,000-character URL is one bad
/// request, not 10 KB of log).
const LOGGED_URI_CHARS: usize = 200;

/// The trace span of a request: method, version and URI, with `access_token` redacted
/// (tokens never reach the logs) and long URIs cut.
fn request_span(request: &Request) -> tracing::Span {
    let uri = request.uri();
    let mut shown = match uri.query() {
        Some(query) => format!("{}?{}", uri.path(), auth::redact_query(query)),
        None => uri.path().to_owned(),
    };
    if let Some((cut, _)) = shown.char_indices().nth(LOGGED_URI_CHARS) {
        shown.truncate(cut);
        shown.push('…');
    }
    tracing::info_span!("request", method = %request.method(), uri = %shown, version = ?request.version())
}

/// Lets pages from other origins subscribe and publish (the seed pages opened from a file):
/// any origin, or only `origins` when given.
fn cors(origins: &[HeaderValue]) -> CorsLayer {
    let allow = if origins.is_empty() {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().cloned())
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static(common::LAST_EVENT_ID_HEADER),
        ])
}

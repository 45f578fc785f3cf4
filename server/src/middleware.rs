//! The router's middleware, each a thin HTTP layer over the part that decides: the limits
//! ([`crate::limits`]: request sizes, stream slots, publish rates), the JSON error body
//! ([`ApiError`]), the request counter ([`crate::metrics`]), the traces (with tokens
//! redacted by [`crate::auth::redact_query`]) and CORS. `routes.rs` stacks them.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::time::Instant;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;

use crate::auth;
use crate::error::ApiError;
use crate::limits::{MAX_HEADER_BYTES, MAX_URI_BYTES};
use crate::metrics;
use crate::state::AppState;

/// Middleware: `414` for a URI longer than [`MAX_URI_BYTES`], `431` for headers larger
/// than [`MAX_HEADER_BYTES`].
pub async fn request_size(request: Request, next: Next) -> Response {
    let length = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if length > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!("the request URI is {length} bytes; at most {MAX_URI_BYTES} are accepted"),
        )
        .into_response();
    }
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request headers are {headers} bytes; at most {MAX_HEADER_BYTES} are accepted"
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// Who a request comes from: the peer's IP, or, behind a reverse proxy that the operator
/// trusts (`trust_proxy`), the last address in `X-Forwarded-For` (the one that proxy
/// added; anything before it the client could have written itself).
fn client_ip(request: &Request, trust_proxy: bool) -> Option<IpAddr> {
    if trust_proxy {
        let forwarded = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|ip| ip.trim().parse().ok())
            .next_back();
        if forwarded.is_some() {
            return forwarded;
        }
    }
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
}

/// Middleware for the stream routes: a stream takes a slot (or is refused with `503`/`429`
/// and `Retry-After`) and holds it for as long as its response body lives, when it is
/// a stream.
pub async fn stream_slots(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let ip = client_ip(&request, state.config.trust_proxy);
    let slot = match state.stream_slots.take(ip) {
        Ok(slot) => slot,
        Err(refusal) => return refusal.into_response(),
    };
    let response = next.run(request).await;
    // The handler's own refusal (a bad stream name, a missing right): a short JSON body,
    // no stream to hold the slot for, and a length the client is told.
    if !response.status().is_success() {
        return response;
    }
    response.map(|body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _held = &slot;
            chunk
        }))
    })
}

/// Middleware for the publishing routes: `429` with `Retry-After` for a client (its token's
/// subject, or its IP) over its publish rate.
pub async fn publish_rate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST && request.uri().path() != common::paths::TRIGGER {
        return next.run(request).await;
    }
    // With auth, a client is its token's subject; else its address.
    let (parts, body) = request.into_parts();
    let subject = state
        .auth
        .enabled()
        .then(|| state.auth.claims(&parts).ok().and_then(|claims| claims.sub))
        .flatten();
    let request = Request::from_parts(parts, body);
    let client = match subject {
        Some(sub) => format!("token of {sub}"),
        None => client_ip(&request, state.config.trust_proxy)
            .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
    };
    match state.publish_rate.check(&client) {
        Ok(()) => next.run(request).await,
        Err(wait) => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many publishes from {client}; retry in {} ms",
                wait.as_millis()
            ),
        )
        .retry_after(wait.as_secs_f64().ceil().max(1.0) as u64)
        .into_response(),
    }
}

/// Middleware: an error answer without a body of ours (from a layer or hyper-level
/// rejection: a timeout, a wrong method, a body too large) gets the JSON body every other
/// error has, naming the status.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
    let (mut parts, _) = response.into_parts();
    let mut answer = ApiError::new(status, reason).into_response();
    // Keep headers such as `Allow` and `Retry-After`.
    parts.headers.remove(header::CONTENT_LENGTH);
    answer
        .headers_mut()
        .extend(parts.headers.drain().filter_map(|(k, v)| k.map(|k| (k, v))));
    answer
}

/// Middleware: counts every answer by route (the route pattern, so labels stay bounded)
/// and status.
pub async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "static".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    metrics::answered(route, response.status());
    response
}

/// The trace of a stream request: [`request_span`] around everything up to the response
/// head, then one line (target `server::middleware`) with the status and how long the stream
/// took to start, `error` for a 5xx, else `debug`. The body, the stream itself, is left
/// as it is, so what is logged while it runs (a subscriber falling behind) names the
/// stream but is outside the request's span.
pub async fn trace_stream(request: Request, next: Next) -> Response {
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
pub fn request_span(request: &Request) -> tracing::Span {
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
pub fn cors(origins: &[HeaderValue]) -> CorsLayer {
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

//! The router's middleware, each a thin HTTP layer over the part that decides: the limits
//! ([`crate::limits`]: request sizes, stream slots, publish rates), the JSON error body
//! ([`ApiError`]), the request counter ([`crate::metrics`]), the traces (with tokens
//! redacted by [`crate::auth::redact_query`]), CORS and the same-origin rule for writes.
//! `routes.rs` stacks them.

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

/// Who a request comes from, as the per-client limits count clients: the peer's IP, or,
/// behind a reverse proxy that the operator trusts (`trust_proxy`), the last entry of
/// `X-Forwarded-For`, the one that proxy added. Only that entry: anything before it the
/// client could have written itself, so when the last one is not an address (`unknown`,
/// `ip:port`, garbage) the client is the proxy itself, never an earlier entry. An IPv6
/// client is its /64 ([`client_of`]).
fn client_ip(request: &Request, trust_proxy: bool) -> Option<IpAddr> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let ip = if trust_proxy {
        forwarded_for(request.headers()).or(peer)
    } else {
        peer
    };
    ip.map(client_of)
}

/// The last entry of the last `X-Forwarded-For` field, when it is an IP address.
fn forwarded_for(headers: &axum::http::HeaderMap) -> Option<IpAddr> {
    let last = headers.get_all("x-forwarded-for").iter().next_back()?;
    let entry = last.to_str().ok()?.rsplit(',').next()?;
    entry.trim().parse().ok()
}

/// The client an address stands for: an IPv4 address itself; an IPv6 address its /64, the
/// block one subscriber line or host is given (RFC 6177), so that a client cannot take a
/// new identity per address of its block. An IPv4-mapped IPv6 address is its IPv4 address.
pub fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    }
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

/// Whether `request` writes (publishes, triggers, opens or closes a session): any method
/// but `GET`, `HEAD` and `OPTIONS`, and every request of the seed's `/trigger`, whose
/// `GET` publishes.
fn writes(request: &Request) -> bool {
    !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) || request.uri().path() == common::paths::TRIGGER
}

/// Middleware: a browser's request that writes is refused (`403`) unless it comes from
/// the hub's own origin or one that `--cors-origin` names, as Go's `CrossOriginProtection`
/// decides it: `Sec-Fetch-Site` when the browser sends it (`same-origin` and `none`, a
/// typed address, pass); else `Origin` against the request's host. A request with
/// neither is not a browser's cross-site request (curl, the CLI, a backend) and passes.
///
/// CORS alone does not do this: a form or a `fetch` without custom headers is sent
/// without asking first (a "simple request"), and only its answer is kept from the page.
pub async fn same_origin_writes(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if !writes(&request) || may_write_from(&request, &state.config.cors_origins) {
        return next.run(request).await;
    }
    let origin = (request.headers().get(header::ORIGIN))
        .and_then(|origin| origin.to_str().ok())
        .unwrap_or("another site");
    ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "a page from {origin} may not write to this hub: only its own pages and the \
             origins given with --cors-origin may"
        ),
    )
    .into_response()
}

/// Whether a request that writes may, by [`same_origin_writes`]'s rule.
fn may_write_from(request: &Request, allowed: &[HeaderValue]) -> bool {
    let headers = request.headers();
    let origin = headers.get(header::ORIGIN);
    if origin.is_some_and(|origin| allowed.contains(origin)) {
        return true;
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = origin else {
        return true;
    };
    let host = request
        .uri()
        .authority()
        .map(|authority| authority.as_str().as_bytes())
        .or_else(|| headers.get(header::HOST).map(HeaderValue::as_bytes));
    // `scheme://host[:port]`: the part after `://` is the host the page came from.
    let origin_host = origin
        .as_bytes()
        .windows(3)
        .position(|w| w == b"://")
        .map(|at| &origin.as_bytes()[at + 3..]);
    origin_host.is_some() && origin_host == host
}

/// CORS: pages of any origin may read (subscribe, read history: what the seed pages opened
/// from a file do); only the origins `--cors-origin` names may also write. The page's own
/// origin needs none of it.
pub fn cors(origins: &[HeaderValue]) -> CorsLayer {
    let writers = origins.to_vec();
    let allow = AllowOrigin::predicate(move |origin, request| {
        let method = if request.method == Method::OPTIONS {
            (request.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD))
                .and_then(|method| Method::from_bytes(method.as_bytes()).ok())
        } else {
            Some(request.method.clone())
        };
        let reads = matches!(method, Some(Method::GET | Method::HEAD))
            && request.uri.path() != common::paths::TRIGGER;
        reads || writers.contains(origin)
    });
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static(common::LAST_EVENT_ID_HEADER),
        ])
}

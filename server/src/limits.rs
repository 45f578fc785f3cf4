//! What the server refuses before a handler runs, each with a JSON reason: request URIs
//! longer than [`MAX_URI_BYTES`] (`414`) and headers larger than [`MAX_HEADER_BYTES`]
//! (`431`); streams beyond the server's or one client's maximum ([`StreamSlots`]: `503` or
//! `429` with `Retry-After`, open streams unaffected); publishes beyond a client's rate
//! ([`PublishRate`]: `429` with `Retry-After`). The router adds the request timeout
//! (`408`), the accept loop in [`crate::serve`] the time allowed for the request headers.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;

/// Longest request URI (path and query) accepted.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Largest total size of the request headers (names and values) accepted.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

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
pub fn client_ip(request: &Request, trust_proxy: bool) -> Option<IpAddr> {
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

/// Seconds a refused client is told to wait (`Retry-After`) when the server is full.
pub const FULL_RETRY_AFTER_SECS: u64 = 5;

/// The open SSE streams, in all and per client IP, against their maxima.
#[derive(Debug, Default)]
pub struct StreamSlots {
    max_total: Option<usize>,
    max_per_ip: Option<usize>,
    open: Mutex<OpenStreams>,
}

#[derive(Debug, Default)]
struct OpenStreams {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One open stream's place; dropping it (when the response ends) frees it.
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    ip: Option<IpAddr>,
}

impl StreamSlots {
    /// At most `max_total` streams open at once, and `max_per_ip` from one client.
    pub fn new(max_total: Option<usize>, max_per_ip: Option<usize>) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_ip,
            open: Mutex::default(),
        })
    }

    /// A place for one more stream from `ip`, or the `503`/`429` that refuses it.
    pub fn take(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<StreamSlot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if self.max_total.is_some_and(|max| open.total >= max) {
            metrics::refused("server_full");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server holds as many streams as it may; retry later",
            )
            .retry_after(FULL_RETRY_AFTER_SECS));
        }
        if let Some(ip) = ip {
            let from_ip = open.per_ip.get(&ip).copied().unwrap_or(0);
            if self.max_per_ip.is_some_and(|max| from_ip >= max) {
                metrics::refused("client_limit");
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("{from_ip} streams are open from {ip}, the most one client may hold"),
                )
                .retry_after(FULL_RETRY_AFTER_SECS));
            }
            *open.per_ip.entry(ip).or_default() += 1;
        }
        open.total += 1;
        Ok(StreamSlot {
            slots: self.clone(),
            ip,
        })
    }

    /// How many streams are open.
    pub fn open(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total -= 1;
        if let Some(ip) = self.ip {
            if let Some(count) = open.per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    open.per_ip.remove(&ip);
                }
            }
        }
    }
}

/// Middleware for the stream routes: a stream takes a slot (or is refused with `503`/`429`
/// and `Retry-After`) and holds it for as long as its response body lives.
pub async fn stream_slots(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let ip = client_ip(&request, state.config.trust_proxy);
    let slot = match state.stream_slots.take(ip) {
        Ok(slot) => slot,
        Err(refusal) => return refusal.into_response(),
    };
    let response = next.run(request).await;
    response.map(|body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _held = &slot;
            chunk
        }))
    })
}

/// Publishes per second allowed per client, with a burst, over a `governor` rate limiter
/// keyed by client (its IP, or with auth the token's subject).
pub struct PublishRate {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
}

impl PublishRate {
    /// `per_second` publishes a second per client, `burst` at once; `None`: no limit.
    pub fn new(per_second: Option<NonZeroU32>, burst: NonZeroU32) -> Self {
        Self {
            limiter: per_second.map(|rate| {
                RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst.max(rate)))
            }),
        }
    }

    /// Lets `client` publish now, or says how long it has to wait.
    pub fn check(&self, client: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&client.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets clients whose limit has fully recovered (the limiter keeps one entry per
    /// client it has seen); call now and then.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
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

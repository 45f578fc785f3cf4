//! What the server refuses before a handler runs, each with a JSON reason: request URIs
//! longer than [`MAX_URI_BYTES`] (`414`) and headers larger than [`MAX_HEADER_BYTES`]
//! (`431`); streams beyond the server's or one client's maximum ([`StreamSlots`]: `503` or
//! `429` with `Retry-After`, open streams unaffected); publishes beyond a client's rate
//! ([`PublishRate`]: `429` with `Retry-After`). The router adds the request timeout
//! (`408`), the accept loop in [`crate::serve`] the time allowed for the request headers.
//!
//! The rules and their counters live here; [`crate::middleware`] applies them to requests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;
use crate::metrics;

/// Longest request URI (path and query) accepted.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Largest total size of the request headers (names and values) accepted.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

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

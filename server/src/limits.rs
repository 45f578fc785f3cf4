//! What the server refuses before a handler runs, each with a JSON reason: request URIs
//! longer than [`MAX_URI_BYTES`] (`414`) and headers larger than [`MAX_HEADER_BYTES`]
//! (`431`); streams beyond the server's or one client's maximum ([`StreamSlots`]: `503` or
//! `429` with `Retry-After`, open streams unaffected); publishes beyond a client's rate
//! ([`PublishRate`]: `429` with `Retry-After`). The router adds the request timeout
//! (`408`), the accept loop in [`crate::serve`] the time allowed for the request headers
//! and the cap on open connections of any kind ([`ConnectionCap`]).
//!
//! The rules and their counters live here; [`crate::middleware`] applies them to requests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

/// How many connections of any kind (streams, API calls, idle keep-alives, connections that
/// have sent nothing yet) may be open at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxOpenConnections {
    /// What the process's open-file limit leaves room for ([`open_file_room`]).
    FromOpenFileLimit,
    /// This many.
    At(usize),
    /// No cap.
    Unlimited,
}

impl MaxOpenConnections {
    /// The flag's convention: absent, from the open-file limit; 0, none; else that many.
    pub fn from_flag(value: Option<u64>) -> Self {
        match value {
            None => Self::FromOpenFileLimit,
            Some(0) => Self::Unlimited,
            Some(n) => Self::At(n as usize),
        }
    }

    /// The cap as a number (`None`: no cap), reading (and first raising to its hard
    /// maximum) the open-file limit when it is derived from it.
    pub fn resolve(self) -> Option<usize> {
        match self {
            Self::FromOpenFileLimit => raise_open_file_limit().map(open_file_room),
            Self::At(n) => Some(n),
            Self::Unlimited => None,
        }
    }
}

/// Connections the open-file limit `limit` leaves room for: a fiftieth of it, at least
/// 64, is kept free for the store (SQLite's database, journal and WAL), Redis connections,
/// the TLS files read on renewal, the web app's files as they are served, and accept
/// itself. At these machines' 20,000 that is 19,600 connections: room for the 19,000 idle
/// subscribers of bench workload E, which a tenth (18,000) refused in part.
pub fn open_file_room(limit: usize) -> usize {
    limit.saturating_sub((limit / 50).max(64))
}

/// Raises the process's soft open-file limit to its hard one (as Go's runtime does at
/// start, and for the same reason: the soft default, often 1,024, is far below what a
/// server of long-lived connections needs), and returns the limit now in force; `None`
/// when it cannot be read or is unlimited.
fn raise_open_file_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur as usize)
}

/// The cap on open connections, checked at accept: a connection past it is closed before
/// anything is read from it or spawned for it (and counted as refused, reason
/// `open_connections`). This is the bound on everything the server keeps per connection.
#[derive(Clone)]
pub struct ConnectionCap {
    permits: Option<Arc<Semaphore>>,
    max: Option<usize>,
}

impl ConnectionCap {
    /// At most `max` open connections (`None`: no cap).
    pub fn new(max: Option<usize>) -> Self {
        Self {
            permits: max.map(|max| Arc::new(Semaphore::new(max))),
            max,
        }
    }

    /// Room for one more connection, held until the permit is dropped; `None` when the cap
    /// is reached.
    pub fn admit(&self) -> Option<Option<OwnedSemaphorePermit>> {
        let Some(permits) = &self.permits else {
            return Some(None);
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => Some(Some(permit)),
            Err(_) => {
                metrics::refused("open_connections");
                None
            }
        }
    }

    /// The cap in words, for the start-up log.
    pub fn describe(&self) -> String {
        self.max
            .map_or_else(|| "no cap on".to_owned(), |max| max.to_string())
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_room_for_the_store_and_redis() {
        assert_eq!(open_file_room(20_000), 19_600);
        assert_eq!(open_file_room(1_024), 960);
        assert_eq!(open_file_room(256), 192);
        assert_eq!(open_file_room(10), 0);
        assert_eq!(
            MaxOpenConnections::from_flag(None),
            MaxOpenConnections::FromOpenFileLimit
        );
        assert_eq!(MaxOpenConnections::from_flag(Some(0)).resolve(), None);
        assert_eq!(MaxOpenConnections::from_flag(Some(7)).resolve(), Some(7));
    }

    #[test]
    fn the_cap_admits_up_to_its_maximum_and_again_once_one_closes() {
        let cap = ConnectionCap::new(Some(2));
        let first = cap.admit().expect("room");
        let _second = cap.admit().expect("room");
        assert!(cap.admit().is_none(), "the third is refused");
        drop(first);
        assert!(cap.admit().is_some(), "room again once one closed");
        assert!(ConnectionCap::new(None).admit().is_some());
    }
}

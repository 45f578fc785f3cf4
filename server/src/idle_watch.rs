//! How long a connection served by hyper may go without a request in flight: the one
//! deadline that every protocol the port speaks shares.
//!
//! hyper bounds an HTTP/1 request head once its first byte came (`header_read_timeout`),
//! but nothing else: detecting the protocol waits for 24 bytes with no deadline (a client
//! that sent `P` was still connected 75 s later), an HTTP/2 handshake waits for the
//! client's SETTINGS for ever, and an HTTP/2 connection without streams stays open as
//! long as the client answers pings. An [`IdleWatch`] counts the connection's requests in
//! flight (a request is in flight from the moment the router gets it until its response
//! body is dropped, so an open stream keeps its connection busy), and
//! [`IdleWatch::idle_past`] completes once there has been none for the whole header
//! timeout: from the connection's start (its first request has to come by then), and
//! from the end of its last request. The accept loop then shuts the connection down.
//!
//! Its cost: one `watch` channel per connection, a reference count per request.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Response;
use http_body_util::BodyExt;
use tokio::sync::watch;
use tokio::time::Instant;

/// Counts one connection's requests in flight; see the module documentation.
pub struct IdleWatch {
    in_flight: Arc<watch::Sender<Requests>>,
    seen: watch::Receiver<Requests>,
}

/// A connection's requests: how many are in flight, and whether any came at all.
#[derive(Default)]
struct Requests {
    in_flight: usize,
    any: bool,
}

/// One request in flight; dropping it ends it.
pub struct InFlight(Arc<watch::Sender<Requests>>);

/// Starts a request in flight; cloned into every request's service call.
#[derive(Clone)]
pub struct Begin(Arc<watch::Sender<Requests>>);

impl Default for IdleWatch {
    fn default() -> Self {
        Self::new()
    }
}

impl IdleWatch {
    pub fn new() -> Self {
        let (in_flight, seen) = watch::channel(Requests::default());
        Self {
            in_flight: Arc::new(in_flight),
            seen,
        }
    }

    /// What the connection's service calls for each request.
    pub fn begin(&self) -> Begin {
        Begin(self.in_flight.clone())
    }

    /// Completes once no request has been in flight since `first` (the connection's
    /// deadline for its first request), or for `period` after the last one ended.
    pub async fn idle_past(&mut self, first: Instant, period: Duration) {
        let mut deadline = first;
        loop {
            if self.seen.borrow_and_update().in_flight > 0 {
                // Busy: the sender lives in `self`, so `changed` cannot fail.
                let _ = self.seen.changed().await;
                deadline = Instant::now() + period;
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                _ = self.seen.changed() => deadline = Instant::now() + period,
            }
        }
    }

    /// Whether a request is in flight now.
    pub fn busy(&self) -> bool {
        self.in_flight.borrow().in_flight > 0
    }

    /// Whether any request came on the connection.
    pub fn served_any(&self) -> bool {
        self.in_flight.borrow().any
    }
}

impl Begin {
    /// Marks a request in flight until the returned guard is dropped.
    pub fn request(&self) -> InFlight {
        self.0.send_modify(|requests| {
            requests.in_flight += 1;
            requests.any = true;
        });
        InFlight(self.0.clone())
    }
}

impl InFlight {
    /// `response` holding this request in flight until its body is dropped.
    pub fn until_sent(self, response: Response<Body>) -> Response<Body> {
        response.map(|body| {
            Body::new(body.map_frame(move |frame| {
                let _held = &self;
                frame
            }))
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|requests| requests.in_flight -= 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_from_the_start_and_after_the_last_request_ends() {
        let period = Duration::from_millis(200);
        let mut watch = IdleWatch::new();
        let start = Instant::now();
        watch.idle_past(start + period, period).await;
        assert!(!watch.served_any());
        assert!(start.elapsed() >= period, "idle before the first deadline");

        let request = watch.begin().request();
        let start = Instant::now();
        let ended = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            drop(request);
        });
        watch.idle_past(start, period).await;
        assert!(
            start.elapsed() >= Duration::from_millis(700),
            "a request in flight holds the deadline off until it ends, then the period runs: {:?}",
            start.elapsed()
        );
        ended.await.unwrap();
        assert!(!watch.busy() && watch.served_any());
    }

    #[tokio::test]
    async fn a_response_body_holds_its_request_in_flight() {
        let watch = IdleWatch::new();
        let response = watch
            .begin()
            .request()
            .until_sent(Response::new(Body::from("x")));
        assert!(watch.busy());
        let _ = response.into_body().collect().await.unwrap();
        assert!(!watch.busy());
    }
}

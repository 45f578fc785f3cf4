//! How the server writes Server-Sent Events: the one place that encodes SSE frames and
//! builds `text/event-stream` responses, so every stream gets the same headers, `retry:`
//! field, keep-alives and shutdown behaviour.
//!
//! Frames are plain bytes. A notification's frame is encoded once, at its first delivery,
//! and the same bytes go to every subscriber; the profile of the fan-out benchmark showed that
//! building an `axum::response::sse::Event` per subscriber and event (allocating, growing,
//! formatting and scanning its data) was most of the server's own CPU time.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::task::Poll;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use common::{events, Heartbeat, LAST_EVENT_ID_HEADER};
use futures::{stream, Stream};
use tokio::time::{Instant, MissedTickBehavior};

use crate::hub::Event;
use crate::metrics;
use crate::state::AppState;

/// Why a `reset` event came, in its data (with the stream's name).
const RESET_REASON: &str = "events after the given id are no longer stored; reload the history";

/// A comment line: ignored by clients, it keeps proxies from closing an idle stream.
const KEEP_ALIVE: &[u8] = b":\n\n";

/// Encodes one event: `event:` (unless `None`, the default `message`), `id:` (unless
/// `None`), then `data` as one `data:` line per line, so no input can add a field or an
/// event.
pub fn frame(event: Option<&str>, id: Option<&str>, data: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 32);
    if let Some(event) = event {
        out.put_slice(b"event: ");
        out.put_slice(event.as_bytes());
        out.put_u8(b'\n');
    }
    if let Some(id) = id {
        out.put_slice(b"id: ");
        out.put_slice(id.as_bytes());
        out.put_u8(b'\n');
    }
    // CR LF, CR and LF all end a line in SSE.
    let unified;
    let data = if data.contains('\r') {
        unified = data.replace("\r\n", "\n");
        &unified
    } else {
        data
    };
    for line in data.split(['\r', '\n']) {
        out.put_slice(b"data: ");
        out.put_slice(line.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.freeze()
}

/// The `heartbeat` event of streams that send one every `interval`; its data says how
/// often, so that clients can tell a silent connection from a dead one.
pub fn heartbeat_frame(interval: std::time::Duration) -> Bytes {
    let beat = Heartbeat {
        interval_ms: interval.as_millis() as u64,
    };
    let data = serde_json::to_string(&beat).expect("heartbeats serialize");
    frame(Some(events::HEARTBEAT), None, &data)
}

/// What a subscriber's event looks like on the wire. Notifications are unnamed (so
/// `onmessage` gets them) and carry an id; `heartbeat` and `reset` are named. `heartbeat`
/// is the subscription's heartbeat frame, encoded once. A notification is encoded once
/// for all its subscribers: whole, with its own id; or, for subscribers of several streams,
/// without the `id:` line, which is theirs.
pub fn event_frame(event: Event, heartbeat: &Bytes) -> Bytes {
    match event {
        Event::Notification { entry, id } => {
            metrics::delivered();
            if let Some(latency) = entry.fan_out.first_delivery() {
                metrics::first_delivery(latency);
            }
            let json =
                || serde_json::to_string(&entry.notification).expect("notifications serialize");
            match id {
                None => entry
                    .fan_out
                    .wire(|| frame(None, Some(&entry.notification.id), &json())),
                Some(id) => with_id(
                    &id,
                    &entry.fan_out.wire_without_id(|| frame(None, None, &json())),
                ),
            }
        }
        Event::Greeting { id } => with_id(&id, heartbeat),
        Event::Heartbeat => heartbeat.clone(),
        Event::Reset { stream, id } => {
            let data = common::Reset {
                reason: RESET_REASON.to_owned(),
                stream,
            };
            let data = serde_json::to_string(&data).expect("a reset encodes");
            frame(Some(events::RESET), Some(&id), &data)
        }
    }
}

/// `frame` (encoded without an `id:` line) with `id` as its id: a subscriber's own id on
/// bytes shared by all (the fields of an event may come in any order).
fn with_id(id: &str, frame: &Bytes) -> Bytes {
    let mut out = BytesMut::with_capacity(id.len() + 5 + frame.len());
    out.put_slice(b"id: ");
    out.put_slice(id.as_bytes());
    out.put_u8(b'\n');
    out.put_slice(frame);
    out.freeze()
}

/// When a stream is cut short of its end, and what it says first.
pub struct Cut {
    pub at: Instant,
    /// A last frame sent at `at`, before the cut (why it came).
    pub farewell: Option<Bytes>,
}

/// Wraps `frames` into an SSE response, [`cut_at`] never.
pub fn response<S>(frames: S, state: &AppState) -> Response
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    cut_at(frames, state, None)
}

/// Wraps `frames` into an SSE response that is interrupted at `cut` (if any).
///
/// The first frame carries `retry:` (the reconnection delay browsers should use). A
/// keep-alive comment goes out every configured interval (one timer per connection, not
/// reset per event; a frame that is ready goes first), and `X-Accel-Buffering: no` stops
/// reverse proxies from holding events back. The stream ends cleanly only when `frames`
/// ends (a clock stream's `count=`). When the server shuts down, or at `cut`, it is
/// **interrupted**: the body fails, so the client sees what a dropped connection looks
/// like (HTTP/1.1 without the last chunk, HTTP/2 a stream reset) and reconnects with
/// `Last-Event-ID`, to this or another instance. A clean end tells some clients (the Go
/// r3labs/sse of the seeds) that the stream is over, and they never come back.
///
/// The body is one `poll_fn` rather than a chain of stream adapters (select, take-while,
/// filter-map, take-until): in the profile of fan-out workload B, each adapter's
/// `poll_next` was its own share of the server's CPU, paid per subscriber and frame. The
/// shutdown token is read with an atomic load while frames are ready, and its waiter
/// (behind a lock shared by every connection) is registered only when the stream is about
/// to wait.
pub fn cut_at<S>(frames: S, state: &AppState, cut: Option<Cut>) -> Response
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    let mut retry = Some(Bytes::from(format!(
        "retry: {}\n",
        state.config.retry.as_millis()
    )));
    let mut frames = Box::pin(frames);
    let every = state.config.keep_alive;
    let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    keep_alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let shutdown = state.shutdown.clone();
    let mut cancelled = Box::pin(shutdown.clone().cancelled_owned());
    let (mut cut_timer, mut farewell) = match cut {
        Some(Cut { at, farewell }) => (Some(Box::pin(tokio::time::sleep_until(at))), farewell),
        None => (None, None),
    };
    let mut ended = false;
    let mut said_farewell = false;
    let body = stream::poll_fn(move |cx| {
        if ended {
            return Poll::Ready(None);
        }
        if shutdown.is_cancelled() {
            ended = true;
            return Poll::Ready(Some(Err(interrupted("the server is shutting down"))));
        }
        if let Some(timer) = &mut cut_timer {
            if timer.as_mut().poll(cx).is_ready() {
                if let Some(last) = farewell.take() {
                    // Its bytes get a moment to leave before the cut (a stream reset
                    // would drop them from HTTP/2's send buffer).
                    timer.as_mut().reset(Instant::now() + FAREWELL_GRACE);
                    said_farewell = true;
                    let _ = timer.as_mut().poll(cx);
                    return Poll::Ready(Some(Ok(last)));
                }
                ended = true;
                return Poll::Ready(Some(Err(interrupted("the stream's time is up"))));
            }
            if said_farewell {
                return Poll::Pending;
            }
        }
        match frames.as_mut().poll_next(cx) {
            Poll::Ready(Some(frame)) => {
                let frame = match retry.take() {
                    Some(retry) => [retry, frame].concat().into(),
                    None => frame,
                };
                return Poll::Ready(Some(Ok::<_, io::Error>(frame)));
            }
            Poll::Ready(None) => {
                ended = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if keep_alive.poll_tick(cx).is_ready() {
            return Poll::Ready(Some(Ok(Bytes::from_static(KEEP_ALIVE))));
        }
        if cancelled.as_mut().poll(cx).is_ready() {
            ended = true;
            return Poll::Ready(Some(Err(interrupted("the server is shutting down"))));
        }
        Poll::Pending
    });
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// How long a cut stream's last frame has to leave before the cut.
const FAREWELL_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// The error that interrupts a stream's body: hyper and [`crate::http1_stream`] then drop
/// the connection (HTTP/1.1) or reset the stream (HTTP/2) instead of ending it.
fn interrupted(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, why)
}

/// The id a client resumes from: a non-blank `Last-Event-ID` header, else a non-blank
/// `lastEventId` query parameter.
pub fn last_event_id<'a>(
    headers: &'a HeaderMap,
    query: &'a HashMap<String, String>,
) -> Option<&'a str> {
    let non_blank = |id: &'a str| Some(id.trim()).filter(|id| !id.is_empty());
    headers
        .get(LAST_EVENT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(non_blank)
        .or_else(|| {
            query
                .get(common::query::LAST_EVENT_ID)
                .and_then(|id| non_blank(id))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_header_does_not_hide_the_query_id() {
        let query: HashMap<String, String> =
            [(common::query::LAST_EVENT_ID.into(), "7".into())].into();
        let mut headers = HeaderMap::new();
        assert_eq!(last_event_id(&headers, &query), Some("7"));
        headers.insert(LAST_EVENT_ID_HEADER, HeaderValue::from_static("  "));
        assert_eq!(last_event_id(&headers, &query), Some("7"));
        headers.insert(LAST_EVENT_ID_HEADER, HeaderValue::from_static("9"));
        assert_eq!(last_event_id(&headers, &query), Some("9"));
        assert_eq!(last_event_id(&headers, &HashMap::new()), Some("9"));
        assert_eq!(last_event_id(&HeaderMap::new(), &HashMap::new()), None);
    }

    #[test]
    fn frames_put_every_line_of_data_in_its_own_field() {
        assert_eq!(
            &frame(None, Some("4"), r#"{"a":1}"#)[..],
            b"id: 4\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(
            &frame(Some("time"), None, "x\r\nevent: evil\nid: 9\rretry: 1")[..],
            b"event: time\ndata: x\ndata: event: evil\ndata: id: 9\ndata: retry: 1\n\n"
        );
    }
}

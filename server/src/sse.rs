//! How the server writes Server-Sent Events: the one place that builds `text/event-stream`
//! responses, so every stream gets the same headers, keep-alives and shutdown behaviour.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};

use crate::state::AppState;

/// The header browsers send when they reconnect.
pub const LAST_EVENT_ID: &str = "last-event-id";

/// The query parameter a fresh `EventSource` (after a page reload) uses instead.
pub const LAST_EVENT_ID_QUERY: &str = "lastEventId";

/// Wraps `events` into an SSE response.
///
/// Adds keep-alive comments at the configured interval, `X-Accel-Buffering: no` so that
/// reverse proxies do not hold events back, and ends the stream when the server shuts down
/// (browsers then reconnect, to this or another instance).
pub fn response<S>(events: S, state: &AppState) -> Response
where
    S: Stream<Item = Event> + Send + 'static,
{
    let events = events
        .map(Ok::<_, Infallible>)
        .take_until(state.shutdown.clone().cancelled_owned());
    let sse = Sse::new(events).keep_alive(KeepAlive::new().interval(state.config.keep_alive));
    (
        [(
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        )],
        sse,
    )
        .into_response()
}

/// The id a client resumes from: the `Last-Event-ID` header, else the `lastEventId`
/// query parameter.
pub fn last_event_id<'a>(
    headers: &'a HeaderMap,
    query: &'a HashMap<String, String>,
) -> Option<&'a str> {
    headers
        .get(LAST_EVENT_ID)
        .and_then(|v| v.to_str().ok())
        .or(query.get(LAST_EVENT_ID_QUERY).map(String::as_str))
        .map(str::trim)
        .filter(|id| !id.is_empty())
}

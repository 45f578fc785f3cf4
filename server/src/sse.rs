//! How the server writes Server-Sent Events: the one place that builds `text/event-stream`
//! responses and turns what the hub delivers into SSE events, so every stream gets the
//! same headers, `retry:` field, keep-alives and shutdown behaviour.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use common::{events, Heartbeat};
use futures::{Stream, StreamExt};

use crate::hub::Delivery;
use crate::state::AppState;

/// The header browsers send when they reconnect.
pub const LAST_EVENT_ID: &str = "last-event-id";

/// The query parameter a fresh `EventSource` (after a page reload) uses instead.
pub const LAST_EVENT_ID_QUERY: &str = "lastEventId";

/// The data of a `reset` event.
const RESET_DATA: &str =
    r#"{"reason":"events after the given id are no longer stored; reload the history"}"#;

/// The data of `heartbeat` events sent every `interval`, as JSON.
pub fn heartbeat_data(interval: std::time::Duration) -> String {
    let beat = Heartbeat {
        interval_ms: interval.as_millis() as u64,
    };
    serde_json::to_string(&beat).expect("heartbeats serialize")
}

/// Wraps `events` into an SSE response.
///
/// The first event carries `retry:` (the reconnection delay browsers should use). Adds
/// keep-alive comments at the configured interval, `X-Accel-Buffering: no` so that
/// reverse proxies do not hold events back, and ends the stream when the server shuts down
/// (browsers then reconnect, to this or another instance).
pub fn response<S>(events: S, state: &AppState) -> Response
where
    S: Stream<Item = Event> + Send + 'static,
{
    let retry = state.config.retry;
    let events = events
        .enumerate()
        .map(move |(n, event)| Ok::<_, Infallible>(if n == 0 { event.retry(retry) } else { event }))
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

/// A hub delivery as an SSE event: notifications unnamed (so `onmessage` gets them) with
/// their id and single-line JSON data; `heartbeat` and `reset` named.
/// `heartbeat` is the JSON of the heartbeat's data, encoded once per subscription.
pub fn delivery_event(delivery: Delivery, heartbeat: &str) -> Event {
    match delivery {
        Delivery::Notification(entry) => {
            Event::default().id(entry.id.to_string()).data(&entry.json)
        }
        Delivery::Heartbeat => Event::default().event(events::HEARTBEAT).data(heartbeat),
        Delivery::Reset(restart) => Event::default()
            .event(events::RESET)
            .id(restart.to_string())
            .data(RESET_DATA),
    }
}

/// The id a client resumes from: a non-blank `Last-Event-ID` header, else a non-blank
/// `lastEventId` query parameter.
pub fn last_event_id<'a>(
    headers: &'a HeaderMap,
    query: &'a HashMap<String, String>,
) -> Option<&'a str> {
    let non_blank = |id: &'a str| Some(id.trim()).filter(|id| !id.is_empty());
    headers
        .get(LAST_EVENT_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(non_blank)
        .or_else(|| query.get(LAST_EVENT_ID_QUERY).and_then(|id| non_blank(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_header_does_not_hide_the_query_id() {
        let query: HashMap<String, String> = [(LAST_EVENT_ID_QUERY.into(), "7".into())].into();
        let mut headers = HeaderMap::new();
        assert_eq!(last_event_id(&headers, &query), Some("7"));
        headers.insert(LAST_EVENT_ID, HeaderValue::from_static("  "));
        assert_eq!(last_event_id(&headers, &query), Some("7"));
        headers.insert(LAST_EVENT_ID, HeaderValue::from_static("9"));
        assert_eq!(last_event_id(&headers, &query), Some("9"));
        assert_eq!(last_event_id(&headers, &HashMap::new()), Some("9"));
        assert_eq!(last_event_id(&HeaderMap::new(), &HashMap::new()), None);
    }
}

//! `GET /events?stream=NAME`: a notification stream; `?stream=a&stream=b&stream=alerts.*`
//! follows several streams, and those a pattern matches later, on one connection.
//!
//! Notifications go out as unnamed events (`onmessage` gets them) with an id; control
//! events are named (`heartbeat`, `reset`). With `Last-Event-ID` (or `?lastEventId=`),
//! everything stored after that id comes first, in every stream followed (the id of a
//! subscriber of several streams is its position in each, see `hub::Position`; of one
//! stream, the entry's own id). An id this server cannot have issued is answered like an
//! id that retention dropped: with a `reset`, never an error that a browser would retry
//! forever. Named private streams need the token's right (`403`); a pattern reaches only
//! the private streams the token may read. A stream that reads private streams with a
//! token is cut when the token expires, right after a `token-expired` event.
//!
//! `?clock_ms=N` adds the server clock to the same connection: an `event: time` (no id, so
//! it never moves the resume position) every N ms, as on `/sse/time`. A page that shows
//! both then holds one of the browser's six HTTP/1.1 connections per host, not two.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::response::Response;
use bytes::Bytes;
use futures::{stream, Stream, StreamExt};
use tokio::time::Instant;

use crate::error::ApiError;
use crate::handlers::{readable_streams, selection_param, time_stream};
use crate::hub::Position;
use crate::state::AppState;
use crate::{auth, params, sse, ticker};

/// The handler of `GET /events`.
#[utoipa::path(get, path = "/events", tag = "streams",
    params(
        ("stream" = Option<Vec<String>>, Query, description = "A stream name, or a prefix ending in `*`; repeat it for several (default `messages`)", style = Form, explode),
        ("lastEventId" = Option<String>, Query, description = "Resume after this id, as `Last-Event-ID` does"),
        ("clock_ms" = Option<u64>, Query, description = "Add the server clock (`event: time`) every so many ms", minimum = 10, maximum = 60000),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this id"),
    ),
    responses(
        (status = 200, description = "An endless event stream: notifications (unnamed events with ids), `heartbeat`, `reset`, `token-expired` and, with `clock_ms`, `time`", content_type = "text/event-stream", body = String),
        (status = "default", description = "Refused or failed, with the reason", body = common::ErrorBody),
    ))]
pub async fn subscribe(
    State(state): State<AppState>,
    parts: Parts,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let selection = selection_param(&parts)?;
    let (streams, may_read) = readable_streams(&state, &parts, &selection)?;
    let rights_expire = state.auth.rights_expire(&parts, &selection);
    let headers = &parts.headers;
    let clock_ms = params::whole_number(&query, common::query::CLOCK_MS, time_stream::INTERVAL_MS)?;
    let after = sse::last_event_id(headers, &query).map(Position::parse_or_unknown);
    let subscription = state
        .hub
        .subscribe_to(selection, streams, after, may_read)
        .await
        .map_err(ApiError::store_unread)?;
    let heartbeat = sse::heartbeat_frame(state.config.heartbeat);
    let events = subscription.map(move |event| sse::event_frame(event, &heartbeat));
    let events = with_clock(
        events,
        clock_ms.map(|ms| state.tickers.ticks(Duration::from_millis(ms))),
    );
    let age_cut = (state.config.max_stream_age).map(|age| sse::Cut {
        at: Instant::now() + age,
        farewell: None,
    });
    let cut = match (rights_expire.map(expiry_cut), age_cut) {
        (Some(expiry), Some(age)) if age.at < expiry.at => Some(age),
        (expiry @ Some(_), _) => expiry,
        (None, age) => age,
    };
    Ok(sse::cut_at(events, &state, cut))
}

/// Where a stream that reads private streams with a token that expires at `exp` (seconds
/// since the Unix epoch, the leeway included) is cut, with the `token-expired` event that
/// tells the client to renew it first.
fn expiry_cut(exp: u64) -> sse::Cut {
    let now = auth::expiry_in(Duration::ZERO);
    let data = common::TokenExpired {
        reason: "the token this stream reads private streams with has expired: open a new \
                 session (or take a new token) before reconnecting"
            .to_owned(),
        exp: exp.saturating_sub(auth::LEEWAY_SECS),
    };
    let data = serde_json::to_string(&data).expect("a token-expired event encodes");
    sse::Cut {
        at: Instant::now() + Duration::from_secs(exp.saturating_sub(now)),
        farewell: Some(sse::frame(Some(common::events::TOKEN_EXPIRED), None, &data)),
    }
}

/// `events` with a `time` frame for every one of `ticks` mixed in (none without ticks);
/// ends when `events` ends. Without ticks, `events` as it is: no adapters for every frame
/// to pass through (see [`sse::response`]).
fn with_clock(
    events: impl Stream<Item = Bytes> + Send + 'static,
    ticks: Option<impl Stream<Item = ticker::Tick> + Send + 'static>,
) -> impl Stream<Item = Bytes> + Send + 'static {
    let Some(ticks) = ticks else {
        return events.left_stream();
    };
    let ticks = ticks.map(|tick| Some(sse::frame(Some(common::events::TIME), None, &tick)));
    stream::select(events.map(Some).chain(stream::once(async { None })), ticks)
        .take_while(|frame| std::future::ready(frame.is_some()))
        .filter_map(std::future::ready)
        .right_stream()
}

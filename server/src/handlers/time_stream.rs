//! `GET /sse/time`: the server clock as `event: time` / `id: N` / `data: <RFC 3339 nanos>`.
//!
//! Reproduces the seed demos: `?count=100&interval_ms=15` and `?count=10&interval_ms=2000`
//! send that many events and end; without `count` it ticks forever (default every second).
//! `Last-Event-ID: N` continues the numbering at N+1; a finite stream already complete
//! answers 204 so that the browser stops reconnecting.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{stream, StreamExt};

use crate::error::ApiError;
use crate::state::AppState;
use crate::{params, sse};

/// Accepted values of `interval_ms`.
pub const INTERVAL_MS: RangeInclusive<u64> = 10..=60_000;
/// Interval when `interval_ms` is absent.
pub const DEFAULT_INTERVAL_MS: u64 = 1_000;
/// Accepted values of `count`.
pub const COUNT: RangeInclusive<u64> = 1..=1_000_000_000;

/// Ids stay below this, so that numbering can go on for as long as any stream lasts.
const MAX_ID: u64 = 1 << 53;

/// The handler of `GET /sse/time`.
#[utoipa::path(get, path = "/sse/time", tag = "streams",
    params(
        ("count" = Option<u64>, Query, description = "End after this many ticks", minimum = 1, maximum = 1000000000),
        ("interval_ms" = Option<u64>, Query, description = "Between ticks (default 1000)", minimum = 10, maximum = 60000),
        ("Last-Event-ID" = Option<String>, Header, description = "Go on numbering after this tick"),
    ),
    responses(
        (status = 200, description = "The server clock: `event: time` with numbered ids", content_type = "text/event-stream", body = String),
        (status = 204, description = "A resumed `count` stream that has already ended"),
        (status = "default", description = "Refused or failed, with the reason", body = common::ErrorBody),
    ))]
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let interval_ms =
        params::whole_number(&query, "interval_ms", INTERVAL_MS)?.unwrap_or(DEFAULT_INTERVAL_MS);
    let count = params::whole_number(&query, "count", COUNT)?;
    let last_id = match sse::last_event_id(&headers, &query) {
        Some(id) => Some(
            id.parse::<u64>()
                .ok()
                .filter(|n| *n < MAX_ID)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Last-Event-ID `{id}` is not an event id of this stream (a whole number)"
                    ))
                })?,
        ),
        None => None,
    };
    let first_id = last_id.map_or(1, |n| n.saturating_add(1));
    let remaining = match count {
        Some(count) if first_id > count => return Ok(StatusCode::NO_CONTENT.into_response()),
        Some(count) => Some(count - first_id + 1),
        None => None,
    };

    let events = state
        .tickers
        .ticks(Duration::from_millis(interval_ms))
        .zip(stream::iter(first_id..))
        .map(|(tick, id)| sse::frame(Some(common::events::TIME), Some(&id.to_string()), &tick));
    Ok(match remaining {
        Some(n) => sse::response(events.take(n as usize), &state),
        None => sse::response(events, &state),
    })
}

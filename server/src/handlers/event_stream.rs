//! `GET /events?stream=NAME`: a notification stream.
//!
//! Notifications go out as unnamed events (`onmessage` gets them) with their id; control
//! events are named (`heartbeat`, `reset`). With `Last-Event-ID` (or `?lastEventId=`),
//! everything stored after that id comes first. An id this server cannot have issued is
//! answered like an id that retention dropped: with a `reset`, never an error that a
//! browser would retry forever.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures::StreamExt;

use crate::error::ApiError;
use crate::handlers::stream_param;
use crate::sse;
use crate::state::AppState;
use crate::store::EventId;

/// The handler of `GET /events`.
pub async fn subscribe(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let stream = stream_param(&query)?;
    let after = sse::last_event_id(&headers, &query).map(EventId::parse_or_unknown);
    let subscription = state
        .hub
        .subscribe(stream, after)
        .await
        .map_err(ApiError::internal)?;
    let heartbeat = sse::heartbeat_frame(state.config.heartbeat);
    let events = subscription
        .into_stream()
        .map(move |delivery| sse::delivery_frame(delivery, &heartbeat));
    Ok(match state.config.max_stream_age {
        Some(age) => sse::response(events.take_until(tokio::time::sleep(age)), &state),
        None => sse::response(events, &state),
    })
}

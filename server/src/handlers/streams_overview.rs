//! `GET /api/streams` and `GET /sse/streams`: every stream with its stored count, newest
//! notification, live subscribers and publishes per second over the last minute, once as
//! JSON or as an SSE stream (`event: streams`, no id) every `?interval_ms=` (default 2 s).

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::Json;
use futures::{stream, StreamExt};
use tokio_stream::wrappers::IntervalStream;

use common::StreamsOverview;

use crate::error::ApiError;
use crate::state::AppState;
use crate::{params, sse};

/// Accepted values of `interval_ms` on `/sse/streams`.
pub const INTERVAL_MS: RangeInclusive<u64> = 500..=60_000;
/// Interval when `interval_ms` is absent.
pub const DEFAULT_INTERVAL_MS: u64 = 2_000;

/// The handler of `GET /api/streams`.
#[utoipa::path(get, path = "/api/streams", tag = "streams",
    responses((status = 200, body = common::StreamsOverview), (status = "default", description = "Refused or failed, with the reason", body = common::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    parts: Parts,
) -> Result<Json<StreamsOverview>, ApiError> {
    let overview = state.hub.overview().await.map_err(ApiError::store_unread)?;
    Ok(Json(visible(&state, &parts, overview)))
}

/// The overview without the private streams the request's token may not read.
fn visible(state: &AppState, parts: &Parts, mut overview: StreamsOverview) -> StreamsOverview {
    overview
        .streams
        .retain(|s| state.auth.may_subscribe(parts, &s.name).is_ok());
    overview
}

/// The handler of `GET /sse/streams`: the overview now, then every interval.
#[utoipa::path(get, path = "/sse/streams", tag = "streams",
    params(("interval_ms" = Option<u64>, Query, description = "Between overviews")),
    responses(
        (status = 200, description = "`event: streams` with a streams overview, now and then every interval", content_type = "text/event-stream", body = String),
        (status = "default", description = "Refused or failed, with the reason", body = common::ErrorBody),
    ))]
pub async fn watch(
    State(state): State<AppState>,
    parts: Parts,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let every = Duration::from_millis(
        params::whole_number(&query, "interval_ms", INTERVAL_MS)?.unwrap_or(DEFAULT_INTERVAL_MS),
    );
    let (watcher, parts) = (state.clone(), Arc::new(parts));
    let frames = IntervalStream::new(tokio::time::interval(every))
        .then(move |_| {
            let (state, parts) = (watcher.clone(), parts.clone());
            async move {
                let overview = state.hub.overview().await?;
                anyhow::Ok(visible(&state, &parts, overview))
            }
        })
        .flat_map(|overview| {
            // A failed read skips one update; the store's error is logged where it happened.
            let frame = overview.ok().and_then(|overview| {
                let data = serde_json::to_string(&overview).ok()?;
                Some(sse::frame(Some(common::events::STREAMS), None, &data))
            });
            stream::iter(frame)
        });
    Ok(sse::response(frames, &state))
}

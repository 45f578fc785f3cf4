//! `GET /api/streams` and `GET /sse/streams`: the streams with their stored count, newest
//! notification, live subscribers and publishes per second over the last minute, once as
//! JSON or as an SSE stream (`event: streams`, no id) every `?interval_ms=` (default 2 s).
//! Each answer lists the first `?limit=` (100) in the `?sort=` order (name, busiest,
//! newest) of the streams whose names start with `?prefix=`, and how many there are: with
//! a million streams a page stays a page. The hub makes the overview once a second for
//! every watcher (see `Hub::overview`); each answer only picks from it.

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

use common::{OverviewOrder, StreamSummary, StreamsOverview};

use crate::error::ApiError;
use crate::state::AppState;
use crate::{params, sse};

/// Accepted values of `interval_ms` on `/sse/streams`.
pub const INTERVAL_MS: RangeInclusive<u64> = 500..=60_000;
/// Interval when `interval_ms` is absent.
pub const DEFAULT_INTERVAL_MS: u64 = 2_000;

/// What a request asks of the overview: see the module documentation.
struct Wanted {
    prefix: String,
    order: OverviewOrder,
    limit: usize,
}

impl Wanted {
    /// From the query, or why not.
    fn from_query(query: &HashMap<String, String>) -> Result<Self, ApiError> {
        let prefix = query
            .get(common::query::PREFIX)
            .cloned()
            .unwrap_or_default();
        let order = match query.get(common::query::SORT) {
            Some(sort) => sort.parse().map_err(ApiError::bad_request)?,
            None => OverviewOrder::default(),
        };
        let limit = params::whole_number(query, common::query::LIMIT, OverviewOrder::LIMITS)?
            .unwrap_or(OverviewOrder::DEFAULT_LIMIT);
        Ok(Self {
            prefix,
            order,
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        })
    }

    /// The streams of `all` (by name) that the request may see and asks for.
    fn pick(&self, all: &[StreamSummary], state: &AppState, parts: &Parts) -> StreamsOverview {
        let mut streams: Vec<&StreamSummary> = all
            .iter()
            .filter(|s| s.name.starts_with(&self.prefix))
            .filter(|s| state.auth.may_subscribe(parts, &s.name).is_ok())
            .collect();
        let total = streams.len() as u64;
        let rank = |a: &&StreamSummary, b: &&StreamSummary| match self.order {
            OverviewOrder::Name => a.name.cmp(&b.name),
            OverviewOrder::Busiest => (b.publishes_last_minute, b.subscribers, b.stored)
                .cmp(&(a.publishes_last_minute, a.subscribers, a.stored))
                .then_with(|| a.name.cmp(&b.name)),
            OverviewOrder::Newest => {
                (b.newest_at.cmp(&a.newest_at)).then_with(|| a.name.cmp(&b.name))
            }
        };
        // The first `limit` without sorting them all: a million streams, a page of them.
        if streams.len() > self.limit {
            streams.select_nth_unstable_by(self.limit, rank);
            streams.truncate(self.limit);
        }
        streams.sort_unstable_by(rank);
        StreamsOverview {
            streams: streams.into_iter().cloned().collect(),
            total,
        }
    }
}

/// The handler of `GET /api/streams`.
#[utoipa::path(get, path = "/api/streams", tag = "streams",
    params(
        ("prefix" = Option<String>, Query, description = "Only streams whose names start with this"),
        ("sort" = Option<String>, Query, description = "name (default), busiest or newest"),
        ("limit" = Option<u64>, Query, description = "At most this many streams (1-1000, default 100)"),
    ),
    responses((status = 200, body = common::StreamsOverview), (status = "default", description = "Refused or failed, with the reason", body = common::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    parts: Parts,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<StreamsOverview>, ApiError> {
    let wanted = Wanted::from_query(&query)?;
    let all = state.hub.overview().await.map_err(ApiError::store_unread)?;
    Ok(Json(wanted.pick(&all, &state, &parts)))
}

/// The handler of `GET /sse/streams`: the overview now, then every interval.
#[utoipa::path(get, path = "/sse/streams", tag = "streams",
    params(
        ("interval_ms" = Option<u64>, Query, description = "Between overviews"),
        ("prefix" = Option<String>, Query, description = "Only streams whose names start with this"),
        ("sort" = Option<String>, Query, description = "name (default), busiest or newest"),
        ("limit" = Option<u64>, Query, description = "At most this many streams (1-1000, default 100)"),
    ),
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
    let wanted = Arc::new(Wanted::from_query(&query)?);
    let (watcher, parts) = (state.clone(), Arc::new(parts));
    let frames = IntervalStream::new(tokio::time::interval(every))
        .then(move |_| {
            let (state, parts, wanted) = (watcher.clone(), parts.clone(), wanted.clone());
            async move {
                let all = state.hub.overview().await?;
                anyhow::Ok(wanted.pick(&all, &state, &parts))
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

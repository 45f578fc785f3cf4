//! The notification API: `POST /api/notifications` (publish), `GET /api/notifications`
//! (history) and `GET|POST /trigger` (the seed demo's button).

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use common::{Draft, History, Level, NewNotification, Notification};

use crate::error::ApiError;
use crate::handlers::{readable_streams, selection_param, stream_param};
use crate::params;
use crate::state::AppState;
use crate::store::{Entry, EventId};

/// Accepted values of `limit` on the history endpoint.
pub const HISTORY_LIMIT: RangeInclusive<u64> = 1..=1000;
/// `limit` when none is given.
pub const DEFAULT_HISTORY_LIMIT: usize = 100;

/// The answer to a publish: 201 (200 for the seed's `GET /trigger`) and what was stored.
type Published = (StatusCode, Json<Notification>);

/// `POST /api/notifications`: validates, stores, fans out, and answers 201 with the result.
#[utoipa::path(post, path = "/api/notifications", tag = "notifications",
    request_body = common::NewNotification,
    responses((status = 201, description = "Stored and sent", body = common::Notification), (status = "default", description = "Refused or failed, with the reason", body = common::ErrorBody)))]
pub async fn publish(
    State(state): State<AppState>,
    parts: Parts,
    payload: Result<Json<NewNotification>, JsonRejection>,
) -> Result<Published, ApiError> {
    let Json(new) = payload.map_err(ApiError::rejected_json)?;
    let draft = Draft::try_from(new).map_err(ApiError::invalid)?;
    publish_draft(&state, &parts, draft).await
}

/// `POST /trigger?stream=NAME`: publishes "Triggered at <server time>" (default stream
/// `messages`).
#[utoipa::path(post, path = "/trigger", tag = "notifications",
    params(("stream" = Option<String>, Query, description = "The stream (default `messages`)", pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    responses((status = 201, description = "Stored and sent", body = common::Notification), (status = "default", description = "Refused or failed, with the reason", body = common::ErrorBody)))]
pub async fn trigger(
    State(state): State<AppState>,
    parts: Parts,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Published, ApiError> {
    publish_draft(&state, &parts, trigger_draft(&query)?).await
}

/// `GET /trigger`: the same, for the seed's page, which calls it with a plain GET; only on
/// a hub that checks no tokens. Where tokens are checked, a GET (which a link, an image or
/// a prefetch sends with the session cookie) never publishes: `405`, use `POST`.
#[utoipa::path(get, path = "/trigger", tag = "notifications",
    params(("stream" = Option<String>, Query, description = "The stream (default `messages`)", pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    responses((status = 200, description = "Stored and sent", body = common::Notification), (status = "default", description = "Refused or failed, with the reason", body = common::ErrorBody)))]
pub async fn trigger_get(
    state: State<AppState>,
    parts: Parts,
    query: Query<HashMap<String, String>>,
) -> Result<Published, ApiError> {
    if state.auth.enabled() {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET /trigger publishes only on a hub without auth; POST /trigger with a token",
        )
        .header(
            axum::http::header::ALLOW,
            axum::http::HeaderValue::from_static("POST"),
        ));
    }
    let (_, stored) = trigger(state, parts, query).await?;
    Ok((StatusCode::OK, stored))
}

/// `GET /api/notifications?stream=&after=&limit=`: stored notifications, oldest first.
///
/// With `after`, the page that follows that id; without, the newest `limit`. An `after`
/// that the store cannot continue from (retention dropped what followed it, or this server
/// never issued it) is `410 Gone`: the client must reload the newest history instead of
/// taking an empty page for "caught up". Several selectors (`?stream=a&stream=alerts.*`,
/// as on `/events`) give the newest `limit` of every stream they cover together, and a
/// `last_event_id` that `/events` with the same selectors resumes from.
#[utoipa::path(get, path = "/api/notifications", tag = "notifications",
    params(
        ("stream" = Option<Vec<String>>, Query, description = "A stream name, or a prefix ending in `*`; repeat it for several (default `messages`)", style = Form, explode),
        ("after" = Option<String>, Query, description = "The page after this id (one stream)"),
        ("limit" = Option<u64>, Query, description = "At most this many (default 100)", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "Oldest first", body = common::History),
        (status = 410, description = "Nothing can follow `after` any more: reload without it", body = common::ErrorBody),
        (status = "default", description = "Refused or failed, with the reason", body = common::ErrorBody),
    ))]
pub async fn history(
    State(state): State<AppState>,
    parts: Parts,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<History>, ApiError> {
    let selection = selection_param(&parts)?;
    let (streams, _) = readable_streams(&state, &parts, &selection)?;
    let limit = params::whole_number(&query, "limit", HISTORY_LIMIT)?
        .map_or(DEFAULT_HISTORY_LIMIT, |n| n as usize);
    let (entries, last_event_id) = match (selection.single(), query.get("after")) {
        (Some(stream), after) => one_stream(&state, stream, after, limit).await?,
        (None, Some(_)) => {
            return Err(ApiError::bad_request(
                "`after` pages one stream; for several, follow /events with the \
                 `last_event_id` of their history",
            ))
        }
        (None, None) => {
            let (entries, position) =
                (state.hub.latest_of(&streams, limit).await).map_err(ApiError::store_unread)?;
            (entries, position.to_string())
        }
    };
    Ok(Json(History {
        notifications: entries.iter().map(|e| e.notification.clone()).collect(),
        last_event_id: Some(last_event_id),
    }))
}

/// The history page of one stream (see [`history`]) and where its reader resumes.
async fn one_stream(
    state: &AppState,
    stream: &str,
    after: Option<&String>,
    limit: usize,
) -> Result<(Vec<Arc<Entry>>, String), ApiError> {
    let (entries, position) = match after {
        Some(after) => {
            let page = state
                .hub
                .history_after(stream, EventId::parse_or_unknown(after), limit)
                .await
                .map_err(ApiError::store_unread)?;
            if page.reset_to.is_some() {
                return Err(ApiError::new(
                    StatusCode::GONE,
                    format!(
                        "notifications after `{after}` are no longer stored (or it is not an id \
                         of this server); reload the newest history without `after`"
                    ),
                ));
            }
            (page.entries, after.clone())
        }
        None => {
            // The position first: whatever is appended after it is in the page or replayed.
            let head = state
                .hub
                .head(stream)
                .await
                .map_err(ApiError::store_unread)?;
            let entries = state
                .hub
                .latest(stream, limit)
                .await
                .map_err(ApiError::store_unread)?;
            (entries, head.to_string())
        }
    };
    let last_event_id = entries
        .last()
        .map_or(position, |newest| newest.notification.id.clone());
    Ok((entries, last_event_id))
}

/// The seed's default notification, for the stream named in the query.
fn trigger_draft(query: &HashMap<String, String>) -> Result<Draft, ApiError> {
    Ok(Draft {
        stream: stream_param(query)?.to_owned(),
        title: format!("Triggered at {}", crate::timestamp::now()),
        body: String::new(),
        level: Level::Info,
    })
}

/// Publishes `draft` (when the request's token may) and answers 201 with what was stored.
/// A store that cannot write (full disk, read-only file, I/O error) is answered `503`:
/// nothing was stored, and the same publish may be sent again shortly.
async fn publish_draft(
    state: &AppState,
    parts: &Parts,
    draft: Draft,
) -> Result<Published, ApiError> {
    state.auth.may_publish(parts, &draft.stream)?;
    let entry = (state.hub.publish(draft).await)
        .map_err(|err| ApiError::store_failed("nothing was stored", &err))?;
    Ok((StatusCode::CREATED, Json(entry.notification.clone())))
}

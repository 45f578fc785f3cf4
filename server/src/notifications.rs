//! The notification endpoints: `GET /events` (subscribe), `POST|GET /api/notifications`
//! (publish, history) and `GET|POST /trigger` (the seed demo's button).

use std::collections::HashMap;
use std::ops::RangeInclusive;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::Event;
use axum::response::Response;
use axum::Json;
use common::{
    events, is_valid_stream_name, Heartbeat, History, Level, NewNotification, Notification,
    DEFAULT_STREAM, MAX_BODY_CHARS, MAX_TITLE_CHARS, STREAM_NAME_RULE,
};
use futures::StreamExt;

use crate::error::ApiError;
use crate::hub::Item;
use crate::state::AppState;
use crate::store::{Draft, EventId};
use crate::{params, sse};

/// Accepted values of `limit` on the history endpoint.
pub const HISTORY_LIMIT: RangeInclusive<u64> = 1..=1000;
/// `limit` when none is given.
pub const DEFAULT_HISTORY_LIMIT: usize = 100;

/// `POST /api/notifications`: validates, stores, fans out, and answers 201 with the result.
pub async fn publish(
    State(state): State<AppState>,
    payload: Result<Json<NewNotification>, JsonRejection>,
) -> Result<(StatusCode, Json<Notification>), ApiError> {
    let Json(new) = payload.map_err(rejected)?;
    created(&state, validate(new)?).await
}

/// Publishes `draft` and answers 201 with what was stored.
async fn created(
    state: &AppState,
    draft: Draft,
) -> Result<(StatusCode, Json<Notification>), ApiError> {
    let entry = state.hub.publish(draft).await.map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(entry.notification.clone())))
}

/// A body that is not a valid publish request: 400 (413 when too large, 415 when not JSON).
fn rejected(rejection: JsonRejection) -> ApiError {
    let status = match rejection {
        // Wrong field types and unknown levels are plain bad requests, not 422.
        JsonRejection::JsonDataError(_) => StatusCode::BAD_REQUEST,
        _ => rejection.status(),
    };
    ApiError::new(status, rejection.body_text())
}

/// `POST /trigger`: publishes "Triggered at <server time>" to `messages`.
pub async fn trigger(
    State(state): State<AppState>,
) -> Result<(StatusCode, Json<Notification>), ApiError> {
    let draft = Draft {
        stream: DEFAULT_STREAM.to_owned(),
        title: format!("Triggered at {}", crate::clock::now()),
        body: String::new(),
        level: Level::Info,
    };
    created(&state, draft).await
}

/// `GET /trigger`: the same, for the seed's page, which calls it with a plain GET.
pub async fn trigger_get(
    state: State<AppState>,
) -> Result<(StatusCode, Json<Notification>), ApiError> {
    let (_, body) = trigger(state).await?;
    Ok((StatusCode::OK, body))
}

/// `GET /api/notifications?stream=&after=&limit=`: stored notifications, oldest first.
///
/// With `after`, the page that follows that id; without, the newest `limit`.
pub async fn history(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<History>, ApiError> {
    let stream = stream_param(&query)?;
    let limit = params::whole_number(&query, "limit", HISTORY_LIMIT)?
        .map_or(DEFAULT_HISTORY_LIMIT, |n| n as usize);
    let store = state.hub.store();
    let entries = match query.get("after") {
        Some(after) => {
            let after = after
                .parse::<EventId>()
                .map_err(|e| ApiError::bad_request(format!("after: {e}")))?;
            store
                .after(stream, after, limit)
                .await
                .map(|page| page.entries)
        }
        None => store.latest(stream, limit).await,
    }
    .map_err(ApiError::internal)?;
    Ok(Json(History {
        notifications: entries.iter().map(|e| e.notification.clone()).collect(),
    }))
}

/// `GET /events?stream=NAME`: the notification stream.
///
/// Notifications go out as unnamed events (`onmessage` gets them) with their id; control
/// events are named (`heartbeat`, `reset`). With `Last-Event-ID` (or `?lastEventId=`),
/// everything stored after that id comes first.
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let stream = stream_param(&query)?;
    let after = sse::last_event_id(&headers, &query)
        .map(|id| {
            id.parse::<EventId>()
                .map_err(|e| ApiError::bad_request(format!("Last-Event-ID: {e}")))
        })
        .transpose()?;
    let items = state
        .hub
        .subscribe(stream, after)
        .await
        .map_err(ApiError::internal)?;

    let heartbeat = serde_json::to_string(&Heartbeat {
        interval_ms: state.config.heartbeat.as_millis() as u64,
    })
    .expect("heartbeats serialize");
    let retry = state.config.retry;
    let mut first = true;
    let events = items.map(move |item| {
        let event = match item {
            Item::Entry(entry) => Event::default().id(entry.id.to_string()).data(&entry.json),
            Item::Heartbeat => Event::default().event(events::HEARTBEAT).data(&heartbeat),
            Item::Reset(restart) => Event::default()
                .event(events::RESET)
                .id(restart.to_string())
                .data(r#"{"reason":"events after the given id are no longer stored; reload the history"}"#),
        };
        if std::mem::take(&mut first) {
            event.retry(retry)
        } else {
            event
        }
    });
    Ok(match state.config.max_stream_age {
        Some(age) => sse::response(events.take_until(tokio::time::sleep(age)), &state),
        None => sse::response(events, &state),
    })
}

/// The `stream` query parameter, checked; `messages` when absent.
fn stream_param(query: &HashMap<String, String>) -> Result<&str, ApiError> {
    let stream = query.get("stream").map_or(DEFAULT_STREAM, String::as_str);
    check_stream(stream)?;
    Ok(stream)
}

fn check_stream(stream: &str) -> Result<(), ApiError> {
    if is_valid_stream_name(stream) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{STREAM_NAME_RULE}, got `{stream}`"
        )))
    }
}

/// Turns a publish request into a [`Draft`], or says what is wrong with it.
///
/// Titles are one line of text; bodies may have line breaks and tabs. No other control
/// characters are accepted (NUL included). Nothing a client sends can add SSE fields or
/// events: the data is single-line JSON, in which every line break is escaped.
pub fn validate(new: NewNotification) -> Result<Draft, ApiError> {
    let stream = new.stream.unwrap_or_else(|| DEFAULT_STREAM.to_owned());
    check_stream(&stream)?;
    if new.title.trim().is_empty() {
        return Err(ApiError::bad_request("title must not be empty"));
    }
    check_text("title", &new.title, MAX_TITLE_CHARS, |_| false)?;
    let body = new.body.unwrap_or_default();
    check_text("body", &body, MAX_BODY_CHARS, |c| {
        matches!(c, '\n' | '\r' | '\t')
    })?;
    Ok(Draft {
        stream,
        title: new.title,
        body,
        level: new.level.unwrap_or_default(),
    })
}

fn check_text(
    field: &str,
    text: &str,
    max_chars: usize,
    allowed_control: impl Fn(char) -> bool,
) -> Result<(), ApiError> {
    let chars = text.chars().count();
    if chars > max_chars {
        return Err(ApiError::bad_request(format!(
            "{field} is {chars} characters long; at most {max_chars} are allowed"
        )));
    }
    if let Some(c) = text
        .chars()
        .find(|&c| c.is_control() && !allowed_control(c))
    {
        return Err(ApiError::bad_request(format!(
            "{field} contains the control character U+{:04X}",
            c as u32
        )));
    }
    Ok(())
}

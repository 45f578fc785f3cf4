//! The HTTP handlers, one module per endpoint family. Each is short: parse the request,
//! call the hub (or the ticker), answer. Routes are wired in [`crate::routes`].

pub mod event_stream;
pub mod health;
pub mod metrics_page;
pub mod notification_api;
pub mod session;
pub mod streams_overview;
pub mod time_stream;

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::request::Parts;
use common::{Selection, DEFAULT_STREAM};

use crate::error::ApiError;
use crate::hub::MayRead;
use crate::state::AppState;

/// Every `stream` query parameter, as one selection; `messages` when there is none.
fn selection_param(parts: &Parts) -> Result<Selection, ApiError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(parts.uri.query().unwrap_or_default())
            .map_err(|err| ApiError::bad_request(format!("the query is malformed: {err}")))?;
    let mut texts = (pairs.iter())
        .filter(|(key, _)| key == common::query::STREAM)
        .map(|(_, value)| value.as_str())
        .peekable();
    if texts.peek().is_none() {
        return Selection::parse([DEFAULT_STREAM]).map_err(ApiError::invalid);
    }
    Selection::parse(texts).map_err(ApiError::invalid)
}

/// The `stream` query parameter, checked; `messages` when absent.
fn stream_param(query: &HashMap<String, String>) -> Result<&str, ApiError> {
    let stream = query
        .get(common::query::STREAM)
        .map_or(DEFAULT_STREAM, String::as_str);
    common::validate::stream_name(stream).map_err(ApiError::invalid)
}

/// What a request may read of `selection`: the streams it covers now, and the check for
/// those its patterns find later. A named private stream without the token's right is
/// `403`; a pattern reaches only the private streams the token may read; more than
/// [`common::selector::MAX_STREAMS`] covered streams is `400`.
fn readable_streams(
    state: &AppState,
    parts: &Parts,
    selection: &Selection,
) -> Result<(Vec<String>, MayRead), ApiError> {
    for stream in selection.streams() {
        state.auth.may_subscribe(parts, stream)?;
    }
    let may_read: MayRead = if selection.has_patterns() {
        let reader = state.auth.reader(parts);
        Arc::new(move |stream| reader.may_read(stream))
    } else {
        // Every stream is named, and was checked above.
        Arc::new(|_| true)
    };
    let streams = state.hub.covered(selection, &may_read);
    if streams.len() > common::selector::MAX_STREAMS {
        return Err(ApiError::bad_request(format!(
            "the selection covers {} streams; one request reads at most {}",
            streams.len(),
            common::selector::MAX_STREAMS
        )));
    }
    Ok((streams, may_read))
}

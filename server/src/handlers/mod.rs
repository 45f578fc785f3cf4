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

use common::{Selection, DEFAULT_STREAM};

use crate::error::ApiError;

/// Every `stream` query parameter, as one selection; `messages` when there is none.
fn selection_param(parts: &axum::http::request::Parts) -> Result<Selection, ApiError> {
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

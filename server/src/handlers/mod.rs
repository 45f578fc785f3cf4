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

use common::DEFAULT_STREAM;

use crate::error::ApiError;

/// The `stream` query parameter, checked; `messages` when absent.
fn stream_param(query: &HashMap<String, String>) -> Result<&str, ApiError> {
    let stream = query
        .get(common::query::STREAM)
        .map_or(DEFAULT_STREAM, String::as_str);
    common::validate::stream_name(stream).map_err(ApiError::invalid)
}

//! The error answer of every handler: an HTTP status with a JSON `{"error": "..."}` body
//! ([`common::ErrorBody`]).

use axum::extract::rejection::JsonRejection;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Seconds a client is told to wait when the store failed.
const STORE_RETRY_AFTER_SECS: u64 = 1;

/// A client-visible failure. Handlers return it instead of panicking on bad input.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// 400: the request itself is wrong; `message` says how.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 400 for input that breaks one of the shared rules of [`common::validate`].
    pub fn invalid(invalid: common::Invalid) -> Self {
        Self::bad_request(invalid.0)
    }

    /// A body that is not a valid JSON request: 400 (413 when too large, 415 when not JSON).
    pub fn rejected_json(rejection: JsonRejection) -> Self {
        let status = match rejection {
            // Wrong field types and unknown levels are plain bad requests, not 422.
            JsonRejection::JsonDataError(_) => StatusCode::BAD_REQUEST,
            _ => rejection.status(),
        };
        Self::new(status, rejection.body_text())
    }

    /// 503 with `Retry-After`: the store did not do what was asked (Redis away or too slow
    /// to answer, a disk that refuses writes), so the same request may be sent again
    /// shortly. `outcome` says what that left undone (`nothing was stored`); the store's
    /// messages show no secret (Redis URLs are shown without their password). Not logged
    /// here: the store's health logs an outage once, not once per request.
    pub fn store_failed(outcome: &str, err: &anyhow::Error) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{outcome}: {err:#}; retry later"),
        )
        .retry_after(STORE_RETRY_AFTER_SECS)
    }

    /// [`ApiError::store_failed`] for a read (a history, a subscriber's start).
    pub fn store_unread(err: anyhow::Error) -> Self {
        Self::store_failed("the store could not be read", &err)
    }

    /// Any status with a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// Tells the client to retry after `secs` seconds (`Retry-After`).
    pub fn retry_after(self, secs: u64) -> Self {
        self.header(header::RETRY_AFTER, HeaderValue::from(secs))
    }

    /// Adds a header to the answer (`WWW-Authenticate`, say).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = common::ErrorBody {
            error: self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        response.headers_mut().extend(self.headers);
        response
    }
}

//! What the server refuses before a handler runs, each with a JSON reason: request URIs
//! longer than [`MAX_URI_BYTES`] (`414`) and headers larger than [`MAX_HEADER_BYTES`]
//! (`431`). The router adds the request timeout (`408`), the accept loop in
//! [`crate::serve`] the time allowed for the request headers.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Longest request URI (path and query) accepted.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Largest total size of the request headers (names and values) accepted.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Middleware: `414` for a URI longer than [`MAX_URI_BYTES`], `431` for headers larger
/// than [`MAX_HEADER_BYTES`].
pub async fn request_size(request: Request, next: Next) -> Response {
    let length = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if length > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!("the request URI is {length} bytes; at most {MAX_URI_BYTES} are accepted"),
        )
        .into_response();
    }
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request headers are {headers} bytes; at most {MAX_HEADER_BYTES} are accepted"
            ),
        )
        .into_response();
    }
    next.run(request).await
}

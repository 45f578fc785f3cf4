//! The built web app: static files from the assets folder (`dist/` by default).
//!
//! Content-hashed files (`name-<hash>.ext`, as `trunk build` names them) are cached
//! forever; everything else is revalidated. The precompressed `.gz` siblings that the
//! build's hook writes (`scripts/web-bundle.sh`) are served to browsers that accept gzip. If the app is not built,
//! `/` answers with a page that names the command that builds it.

use std::path::{Path, PathBuf};

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::Router;
use tower_http::services::ServeDir;

use crate::error::ApiError;

/// The command that builds the web app into `dist/`.
pub const BUILD_COMMAND: &str = "trunk build --release";

/// A router that serves `dir`, to be used as the app's fallback.
pub fn router(dir: &Path) -> Router {
    let missing = dir.to_path_buf();
    let files = ServeDir::new(dir)
        .precompressed_gzip()
        .fallback(axum::routing::any(move || not_found(missing.clone())));
    Router::new()
        .fallback_service(files)
        .layer(middleware::from_fn(cache_control))
        .layer(middleware::from_fn(crate::page_policy::pages))
        .layer(middleware::from_fn(read_only))
        .layer(middleware::from_fn(file_names_fit))
}

/// Longest file name the file systems we run on allow.
const MAX_FILE_NAME: usize = 255;

/// A path with a segment longer than any file name names no file: `404`, not the I/O
/// error (`500`) the file system would report.
async fn file_names_fit(request: Request, next: Next) -> Response {
    if request
        .uri()
        .path()
        .split('/')
        .any(|segment| segment.len() > MAX_FILE_NAME)
    {
        return ApiError::new(StatusCode::NOT_FOUND, "no such path").into_response();
    }
    next.run(request).await
}

/// Files can only be read: any other method gets a JSON 405, like every API error.
async fn read_only(request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let message = format!(
        "{} {}: no such endpoint",
        request.method(),
        request.uri().path()
    );
    let mut response = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, message).into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

/// Whether the app has been built into `dir`.
pub fn is_built(dir: &Path) -> bool {
    dir.join("index.html").is_file()
}

/// 404 as JSON, or, when the app is not built at all, a page that says how to build it.
async fn not_found(dir: PathBuf) -> Response {
    if is_built(&dir) {
        return ApiError::new(StatusCode::NOT_FOUND, "no such path").into_response();
    }
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>notify-hub: app not built</title>\
         <h1>The web app is not built</h1>\
         <p>No <code>index.html</code> in <code>{}</code>. Build it with <code>{BUILD_COMMAND}</code> \
         (or run <code>./scripts/run.sh</code>, which builds and starts everything), \
         or point <code>--assets</code> at the folder that holds it.</p>",
        dir.display()
    );
    (StatusCode::SERVICE_UNAVAILABLE, Html(page)).into_response()
}

/// Sets `Cache-Control`: immutable for content-hashed files, revalidate for the rest.
async fn cache_control(request: Request, next: Next) -> Response {
    let hashed = is_content_hashed(request.uri().path());
    let mut response = next.run(request).await;
    if response.status().is_success() {
        let value = if hashed {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    }
    response
}

/// Whether a path names a file whose name carries a content hash, as `trunk build` writes
/// them: `frontend-0123456789abcdef.js`, `frontend-0123456789abcdef_bg.wasm`.
fn is_content_hashed(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or_default();
    let stem = name.split('.').next().unwrap_or_default();
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    stem.rsplit_once('-')
        .is_some_and(|(_, hash)| hash.len() >= 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::is_content_hashed;

    #[test]
    fn recognises_content_hashes() {
        assert!(is_content_hashed("/frontend-3f9a0c1b2d4e5f60.js"));
        assert!(is_content_hashed("/frontend-3f9a0c1b2d4e5f60_bg.wasm"));
        assert!(is_content_hashed("/style-00aabbccddeeff11.css"));
        assert!(!is_content_hashed("/"));
        assert!(!is_content_hashed("/index.html"));
        assert!(!is_content_hashed("/plain-page.html"));
    }
}

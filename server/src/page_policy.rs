//! The headers that keep the app's pages to themselves.
//!
//! Every response carries `X-Content-Type-Options: nosniff` (a JSON body is never run as a
//! script) and `Referrer-Policy: no-referrer` (an `?access_token=` in a URL never travels
//! in a `Referer`). An HTML page of the app also carries a Content-Security-Policy under
//! which the wasm app works and nothing else runs: scripts only from the hub itself and
//! the page's own inline scripts, named by their hash (trunk's build inlines the one that
//! starts the wasm), `'wasm-unsafe-eval'` to compile the wasm, connections only to the hub,
//! no plugins, no `<base>`, and no framing by any site (`frame-ancestors 'none'`, with
//! `X-Frame-Options: DENY` for browsers that predate it).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The largest page whose inline scripts are hashed; a larger one is sent without them
/// allowed (the app's `index.html` is under 2 KB).
const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// Middleware for every response: `nosniff` and `no-referrer`.
pub async fn every_response(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Middleware for the app's files: an HTML page gets its Content-Security-Policy, with
/// its inline scripts' hashes. A page is asked for uncompressed (its gzip copy saves
/// about a kilobyte), so that its scripts can be read; a `HEAD` of one is answered from
/// its `GET`, so that both carry the same policy.
pub async fn pages(mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let mut head = false;
    if path.ends_with('/') || path.ends_with(".html") {
        request.headers_mut().remove(header::ACCEPT_ENCODING);
        head = request.method() == Method::HEAD;
        if head {
            *request.method_mut() = Method::GET;
        }
    }
    let response = next.run(request).await;
    let is_html = (response.headers().get(header::CONTENT_TYPE))
        .is_some_and(|kind| kind.as_bytes().starts_with(b"text/html"));
    if !is_html || response.headers().contains_key(header::CONTENT_ENCODING) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(page) = axum::body::to_bytes(body, MAX_PAGE_BYTES).await else {
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::empty())
            .unwrap_or_default();
    };
    let policy = content_security_policy(&inline_scripts(&page));
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        parts
            .headers
            .insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    parts
        .headers
        .insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if head {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, page.len().into());
        return Response::from_parts(parts, Body::empty());
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(page))
}

/// The policy of a page whose inline scripts are `scripts`.
fn content_security_policy(scripts: &[&[u8]]) -> String {
    let hashes: String = scripts
        .iter()
        .map(|script| {
            let digest = Sha256::digest(script);
            format!(
                " 'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        })
        .collect();
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{hashes}; \
         style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
         worker-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

/// The contents of the inline `<script>` elements of `page` (those without `src`), as
/// the browser hashes them.
///
/// A scan rather than an HTML parser: the pages are the build's own (trunk's output and
/// the seed pages), where a script's text ends at the first `</script`, as HTML's own
/// tokenizer ends it; html5ever would add a parser of its own for these few bytes.
fn inline_scripts(page: &[u8]) -> Vec<&[u8]> {
    let mut scripts = Vec::new();
    let mut rest = page;
    while let Some(open) = find(rest, b"<script") {
        let after = &rest[open + b"<script".len()..];
        let Some(tag_end) = find(after, b">") else {
            break;
        };
        let attributes = after[..tag_end].to_ascii_lowercase();
        let body = &after[tag_end + 1..];
        let close = find(body, b"</script").unwrap_or(body.len());
        if find(&attributes, b"src=").is_none() {
            scripts.push(&body[..close]);
        }
        rest = &body[close..];
    }
    scripts
}

/// Where `needle` first occurs in `haystack`, ASCII case ignored.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_scripts_are_found_and_hashed_as_browsers_hash_them() {
        let page = b"<html><script src=\"/a.js\"></script><SCRIPT type=module>init()</script>\
                     <p>x</p><script>\n  go();\n</SCRIPT>";
        let scripts = inline_scripts(page);
        assert_eq!(scripts, [&b"init()"[..], &b"\n  go();\n"[..]]);
        let policy = content_security_policy(&scripts[..1]);
        // echo -n 'init()' | openssl dgst -sha256 -binary | base64
        assert!(
            policy.contains("'sha256-w4ujnOpjBoH2vcasx+reJRUwYivG8Q3afx/XevGJod8='"),
            "{policy}"
        );
        assert!(policy.contains("frame-ancestors 'none'"));
        assert!(inline_scripts(b"<p>no scripts</p>").is_empty());
    }
}

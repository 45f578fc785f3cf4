//! The built web app: served from the assets folder with the right caching, and a clear
//! page when it has not been built.

mod support;

use reqwest::StatusCode;
use support::{config, TestServer};

#[tokio::test]
async fn serves_the_built_app_with_cache_headers() {
    let dist = tempfile::tempdir().unwrap();
    std::fs::write(
        dist.path().join("index.html"),
        "<!doctype html><title>hub</title>",
    )
    .unwrap();
    std::fs::write(
        dist.path().join("frontend-0123456789abcdef.js"),
        "console.log(1)",
    )
    .unwrap();
    let server = TestServer::start(server::config::Config {
        assets: dist.path().into(),
        ..config()
    })
    .await;

    let index = reqwest::get(server.at("/")).await.unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    assert_eq!(index.headers()["cache-control"], "no-cache");
    assert!(index.text().await.unwrap().contains("<title>hub</title>"));

    let script = reqwest::get(server.at("/frontend-0123456789abcdef.js"))
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));

    // A precompressed sibling is served to clients that accept it.
    std::fs::write(
        dist.path().join("frontend-0123456789abcdef.js.gz"),
        b"gzipped bytes",
    )
    .unwrap();
    let gzipped = reqwest::Client::new()
        .get(server.at("/frontend-0123456789abcdef.js"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    assert_eq!(gzipped.bytes().await.unwrap().as_ref(), b"gzipped bytes");

    let missing = reqwest::get(server.at("/nope.js")).await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let body: common::ErrorBody = missing.json().await.unwrap();
    assert_eq!(body.error, "no such path");

    let posted = reqwest::Client::new()
        .post(server.at("/index.html"))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(posted.headers()["allow"], "GET, HEAD");
    let body: common::ErrorBody = posted.json().await.unwrap();
    assert_eq!(body.error, "POST /index.html: no such endpoint");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_unbuilt_app_gets_a_page_naming_the_build_command() {
    let server = TestServer::start(config()).await;
    let response = reqwest::get(server.at("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let page = response.text().await.unwrap();
    assert!(page.contains("trunk build --release"), "{page}");
    server.stop().await.unwrap();
}

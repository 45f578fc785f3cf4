//! `/sse/time` against a real server on port 0: format, ids, count, Last-Event-ID, errors,
//! keep-alives, and shutdown.

mod support;

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::StatusCode;
use support::{collect_all, config, events, TestServer};

#[tokio::test]
async fn sends_count_events_in_the_seed_format_then_ends() {
    let server = TestServer::start(config()).await;
    let response = reqwest::get(server.at("/sse/time?count=5&interval_ms=15"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");

    let events = collect_all(response, Duration::from_secs(10)).await;
    let ids: Vec<_> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5"]);
    assert!(events[0].retry.is_some(), "the first event carries retry:");
    let mut previous = None;
    for event in &events {
        assert_eq!(event.event, "time");
        let (_, fraction) = event.data.split_once('.').expect("fractional seconds");
        assert_eq!(
            fraction.len(),
            "123456789Z".len(),
            "nanoseconds: {}",
            event.data
        );
        let at = chrono_like_parse(&event.data);
        assert!(
            previous < Some(at.clone()),
            "time goes forward: {}",
            event.data
        );
        previous = Some(at);
    }
    server.stop().await.unwrap();
}

/// RFC 3339 UTC timestamps with fixed nanoseconds sort as strings; check the shape and return it.
fn chrono_like_parse(data: &str) -> String {
    let bytes = data.as_bytes();
    assert_eq!(bytes.len(), 30, "{data}");
    assert_eq!(
        (bytes[4], bytes[7], bytes[10], bytes[13], bytes[16], bytes[19]),
        (b'-', b'-', b'T', b':', b':', b'.'),
        "{data}"
    );
    assert!(data.ends_with('Z'), "{data}");
    data.to_owned()
}

#[tokio::test]
async fn last_event_id_continues_the_numbering_and_a_finished_stream_answers_204() {
    let server = TestServer::start(config()).await;
    let client = reqwest::Client::new();
    let url = server.at("/sse/time?count=7&interval_ms=10");

    let response = client
        .get(&url)
        .header("Last-Event-ID", "5")
        .send()
        .await
        .unwrap();
    let ids: Vec<_> = collect_all(response, Duration::from_secs(10))
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, ["6", "7"]);

    let done = client
        .get(&url)
        .header("Last-Event-ID", "7")
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::NO_CONTENT);

    let by_query = client
        .get(format!("{url}&lastEventId=6"))
        .send()
        .await
        .unwrap();
    let ids: Vec<_> = collect_all(by_query, Duration::from_secs(10))
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, ["7"]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn without_count_it_keeps_ticking() {
    let server = TestServer::start(config()).await;
    let response = reqwest::get(server.at("/sse/time?interval_ms=10"))
        .await
        .unwrap();
    let first: Vec<_> = events(response).take(20).map(|e| e.id).collect().await;
    let expected: Vec<_> = (1..=20).map(|n| n.to_string()).collect();
    assert_eq!(first, expected);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_parameters_get_400_with_a_json_reason() {
    let server = TestServer::start(config()).await;
    let client = reqwest::Client::new();
    for (query, names) in [
        ("interval_ms=5", "interval_ms"),
        ("interval_ms=60001", "interval_ms"),
        ("interval_ms=abc", "interval_ms"),
        ("interval_ms=-1", "interval_ms"),
        ("count=0", "count"),
        ("count=1.5", "count"),
        ("count=99999999999999999999999", "count"),
    ] {
        let response = client
            .get(server.at(&format!("/sse/time?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: common::ErrorBody = response.json().await.unwrap();
        assert!(body.error.contains(names), "{query}: {}", body.error);
    }
    for id in ["not-a-number", "18446744073709551614"] {
        let response = client
            .get(server.at("/sse/time"))
            .header("Last-Event-ID", id)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{id}");
        let body: common::ErrorBody = response.json().await.unwrap();
        assert!(body.error.contains("Last-Event-ID"), "{}", body.error);
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn idle_streams_get_keep_alive_comments() {
    let server = TestServer::start(server::config::Config {
        keep_alive: Duration::from_millis(50),
        ..config()
    })
    .await;
    let response = reqwest::get(server.at("/sse/time?interval_ms=60000"))
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while !text.lines().any(|line| line.starts_with(':')) {
            let chunk = body.next().await.unwrap().unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no keep-alive comment in {text:?}"));
    let first_event = text.split("\n\n").next().unwrap_or_default();
    assert!(
        first_event.starts_with("retry: ") && first_event.contains("\nevent: time\n"),
        "the first tick came first, with retry: {text:?}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_interrupts_open_streams_so_clients_reconnect() {
    let server = TestServer::start(config()).await;
    let response = reqwest::get(server.at("/sse/time")).await.unwrap();
    let mut events = response.bytes_stream().eventsource();
    assert_eq!(events.next().await.unwrap().unwrap().id, "1");
    let stopping = tokio::spawn(server.stop());
    let rest = tokio::time::timeout(Duration::from_secs(5), events.collect::<Vec<_>>())
        .await
        .expect("the open stream was not interrupted by the shutdown");
    assert!(rest.len() <= 5, "{rest:?}");
    assert!(
        rest.last().is_some_and(Result::is_err),
        "the stream ended cleanly, which some clients take for good: {rest:?}"
    );
    stopping.await.unwrap().unwrap();
}

#[tokio::test]
async fn health_and_cors() {
    let server = TestServer::start(config()).await;
    let response = reqwest::Client::new()
        .get(server.at("/healthz"))
        .header("Origin", "http://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Any page may read: its origin is allowed back.
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://elsewhere.example"
    );
    let health: common::Health = response.json().await.unwrap();
    assert_eq!(health.status, "ok");
    server.stop().await.unwrap();
}

/// Only the origins `--cors-origin` names may write from a browser; every origin may read.
#[tokio::test]
async fn writes_are_open_to_named_origins_only() {
    let server = TestServer::start(server::config::Config {
        cors_origins: vec![axum::http::HeaderValue::from_static(
            "http://allowed.example",
        )],
        ..config()
    })
    .await;
    let client = reqwest::Client::new();
    let asked = |origin: &'static str| {
        let request = client
            .request(reqwest::Method::OPTIONS, server.at("/api/notifications"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST");
        async move { request.send().await.unwrap() }
    };
    let allowed = asked("http://allowed.example").await;
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://allowed.example"
    );
    let other = asked("http://other.example").await;
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let read = client
        .get(server.at("/healthz"))
        .header("Origin", "http://other.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        read.headers()["access-control-allow-origin"],
        "http://other.example"
    );
    server.stop().await.unwrap();
}

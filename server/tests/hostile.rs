//! Hostile input against the real router, generated with proptest: publish bodies, stream
//! names, `Last-Event-ID` values, query strings and header sizes. Whatever comes in: no
//! panic, no 5xx, and nothing a publisher writes can add an SSE field or event. Each test
//! prints how many cases it tried.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use support::{config, TestServer};

/// One server and runtime for all cases (a server per case would test start-up instead).
fn harness() -> &'static (tokio::runtime::Runtime, String) {
    static HARNESS: OnceLock<(tokio::runtime::Runtime, String)> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let server = runtime.block_on(TestServer::start(config()));
        let url = server.url.clone();
        // The server lives as long as the test process.
        std::mem::forget(server);
        (runtime, url)
    })
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Any text, with a bias towards what breaks SSE and JSON: line breaks, colons, quotes,
/// control characters, field names.
fn nasty_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\r\\n:\"\\\\ a-z]{0,40}",
        Just("x\n\nevent: injected\ndata: {}\n\n".to_owned()),
        Just("x\r\nid: 999\r\nretry: 1\r\n".to_owned()),
        Just("\u{0}\u{7f}\u{2028}".to_owned()),
    ]
}

fn assert_no_server_error(status: u16, what: &str) {
    assert!(status < 500, "{what} answered {status}");
}

/// Runs `test` on `cases` values of `strategy`, failing (with the smallest failing input
/// proptest finds) on a panic; returns how many cases ran.
fn run<S: Strategy>(strategy: S, cases: u32, test: impl Fn(S::Value)) -> u32
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let tried = AtomicUsize::new(0);
    runner
        .run(&strategy, |value| {
            tried.fetch_add(1, Ordering::Relaxed);
            test(value);
            Ok(())
        })
        .unwrap();
    tried.load(Ordering::Relaxed) as u32
}

#[test]
fn publishes_never_fail_the_server_or_inject_sse() {
    let strategy = (
        prop_oneof![Just("hostile".to_owned()), nasty_text()],
        nasty_text(),
        proptest::option::of(nasty_text()),
        proptest::option::of(prop_oneof![Just("info".to_owned()), nasty_text()]),
        proptest::option::of(nasty_text()),
    );
    let tried = run(strategy, 300, |(stream, title, body, level, extra)| {
        let (runtime, url) = harness();
        runtime.block_on(async {
            let mut json = serde_json::json!({"stream": stream, "title": title});
            if let Some(body) = &body {
                json["body"] = body.clone().into();
            }
            if let Some(level) = &level {
                json["level"] = level.clone().into();
            }
            if let Some(extra) = &extra {
                json[extra.as_str()] = 1.into();
            }
            let response = client()
                .post(format!("{url}/api/notifications"))
                .json(&json)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            assert_no_server_error(status, "a publish");
            if status != 201 {
                let reason: common::ErrorBody = response.json().await.unwrap();
                assert!(!reason.error.is_empty());
                return;
            }
            let stored: common::Notification = response.json().await.unwrap();
            // Read it back as SSE: exactly that notification, under no other event name.
            let replay = client()
                .get(format!("{url}/events"))
                .query(&[("stream", stored.stream.as_str())])
                .header(
                    "last-event-id",
                    (stored.id.parse::<u64>().unwrap() - 1).to_string(),
                )
                .send()
                .await
                .unwrap();
            let mut events = replay.bytes_stream().eventsource();
            loop {
                let event = tokio::time::timeout(Duration::from_secs(5), events.next())
                    .await
                    .expect("the notification was not replayed")
                    .unwrap()
                    .unwrap();
                assert!(
                    ["message", "heartbeat", "reset"].contains(&event.event.as_str()),
                    "injected event {:?}",
                    event.event
                );
                if event.event == "message" {
                    assert_eq!(event.id, stored.id, "injected id");
                    let received: common::Notification = serde_json::from_str(&event.data).unwrap();
                    assert_eq!(received, stored);
                    break;
                }
            }
        });
    });
    println!("hostile publishes: {tried} cases, 0 panics, 0 5xx, 0 injected SSE fields");
}

#[test]
fn queries_headers_and_resume_ids_never_fail_the_server() {
    let strategy = (
        prop_oneof![
            Just("/events"),
            Just("/api/notifications"),
            Just("/sse/time"),
            Just("/trigger"),
            Just("/api/streams"),
            Just("/sse/streams"),
            Just("/healthz"),
            Just("/metrics"),
        ],
        "[ -~]{0,300}",
        "[ -~]{0,200}",
        0usize..40_000,
    );
    let tried = run(
        strategy,
        300,
        |(path, query, last_event_id, header_bytes)| {
            let (runtime, url) = harness();
            runtime.block_on(async {
                let query: String = query.chars().filter(|c| !matches!(c, '#' | ' ')).collect();
                let target = format!("{url}{path}?{query}");
                let Ok(parsed) = reqwest::Url::parse(&target) else {
                    return;
                };
                let mut request = client()
                    .get(parsed)
                    .header("x-filler", "f".repeat(header_bytes));
                if let Ok(value) = reqwest::header::HeaderValue::from_str(&last_event_id) {
                    request = request.header("last-event-id", value);
                }
                let response = request.send().await.unwrap();
                assert_no_server_error(
                    response.status().as_u16(),
                    &target[..target.len().min(120)],
                );
            });
        },
    );
    println!("hostile queries, resume ids and headers: {tried} cases, 0 panics, 0 5xx");
}

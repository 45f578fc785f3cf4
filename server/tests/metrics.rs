//! `/metrics` against a real server process (its own, so the counters start at zero).

use std::time::Duration;

use e2e::ServerProcess;
use eventsource_stream::Eventsource;
use futures::StreamExt;

/// The value of the series `series` (name with its labels, as printed) in `text`.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// Reads `n` notifications from an `/events` response; returns the rest of the stream, to
/// keep it open.
async fn read_notifications(response: reqwest::Response, n: usize) -> impl Sized {
    let mut events = response.bytes_stream().eventsource();
    let mut seen = 0;
    while seen < n {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("no event in 10 s")
            .expect("the stream ended")
            .expect("malformed SSE");
        if event.event == "message" {
            seen += 1;
        }
    }
    events
}

#[tokio::test]
async fn metrics_count_what_happened_and_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::api_only(
        "127.0.0.1:0",
        &dir.path().join("hub.db"),
        &["--max-connections-per-ip", "2", "--metrics-token", "s3cret"],
    )
    .unwrap();
    let client = reqwest::Client::new();
    let at = |path: &str| format!("{}{path}", server.url);

    let anonymous = client.get(at("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");

    let live = client.get(at("/events?stream=m")).send().await.unwrap();
    for n in 0..3 {
        let published = client
            .post(at("/api/notifications"))
            .json(&serde_json::json!({"stream": "m", "title": format!("n{n}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(published.status().as_u16(), 201);
    }
    let _live = read_notifications(live, 3).await;
    let replaying = client
        .get(at("/events?stream=m"))
        .header("last-event-id", "0")
        .send()
        .await
        .unwrap();
    let _replaying = read_notifications(replaying, 3).await;
    let refused = client.get(at("/events?stream=m")).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    // Streams and the rest are routed apart (each with its own trace); both pass the
    // middleware once: one count, one CORS header.
    let health = client
        .get(at("/healthz"))
        .header("origin", "http://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(
        health
            .headers()
            .get_all("access-control-allow-origin")
            .iter()
            .count(),
        1
    );

    let text = client
        .get(at("/metrics"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(value(&text, "notify_hub_published_total"), 3.0);
    assert_eq!(value(&text, "notify_hub_delivered_total"), 6.0);
    assert_eq!(value(&text, "notify_hub_replayed_total"), 3.0);
    assert_eq!(value(&text, r#"notify_hub_subscribers{stream="m"}"#), 2.0);
    assert_eq!(value(&text, "notify_hub_streams_open"), 2.0);
    // Two streams open: at least their connections' tasks.
    assert!(value(&text, "notify_hub_tasks") >= 2.0);
    assert_eq!(
        value(
            &text,
            r#"notify_hub_connections_refused_total{reason="client_limit"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"notify_hub_http_requests_total{route="/api/notifications",status="201"}"#
        ),
        3.0
    );
    for (series, count) in [
        (r#"{route="/events",status="200"}"#, 2.0),
        (r#"{route="/events",status="429"}"#, 1.0),
        (r#"{route="/healthz",status="200"}"#, 1.0),
    ] {
        let series = format!("notify_hub_http_requests_total{series}");
        assert_eq!(value(&text, &series), count, "{series}");
    }
    assert_eq!(
        value(&text, "notify_hub_publish_to_first_delivery_seconds_count"),
        3.0
    );
    assert!(value(&text, "notify_hub_store_append_seconds_count") >= 1.0);
    assert!(value(&text, "notify_hub_process_resident_memory_bytes") > 1e6);
    assert!(value(&text, "notify_hub_process_open_fds") > 5.0);
    println!(
        "metrics: {} series after 3 publishes, 6 deliveries and 1 refusal",
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count()
    );
}

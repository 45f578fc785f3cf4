//! Faults the hub must survive without losing what it acknowledged, against a real server.
//! Each test prints what it measured.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use server::config::Config;
use server::store::Retention;
use support::{config, events, next_event, subscribe, TestServer};

/// Posts one notification; the status and, for a 201, the stored notification.
async fn post(
    client: &reqwest::Client,
    server: &TestServer,
    title: String,
) -> (u16, Option<common::Notification>, Option<String>) {
    let response = client
        .post(server.at("/api/notifications"))
        .json(&serde_json::json!({"stream": "full", "title": title, "body": "x".repeat(4000)}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    if status == 201 {
        (status, Some(response.json().await.unwrap()), None)
    } else {
        let body: common::ErrorBody = response.json().await.unwrap();
        assert!(retry_after.is_some(), "a refusal says when to retry");
        (status, None, Some(body.error))
    }
}

#[tokio::test]
async fn a_full_store_refuses_with_503_keeps_subscribers_and_recovers_by_itself() {
    let db = support::temp_db();
    let server = TestServer::start(Config {
        db: db.clone(),
        max_db_bytes: Some(256 * 1024),
        retention: Retention::new(10, 0),
        prune_every: Duration::from_millis(500),
        heartbeat: Duration::from_millis(200),
        ..config()
    })
    .await;
    let mut live = events(subscribe(&server, "full", None).await);
    let client = reqwest::Client::new();

    // Publish 4 KB notifications until the store is full (not even one more fits).
    let mut acknowledged = Vec::new();
    let mut refusal = None;
    for n in 0..2_000 {
        match post(&client, &server, format!("n{n}")).await {
            (201, Some(stored), _) => acknowledged.push(stored),
            (503, _, reason) => {
                refusal = reason;
                break;
            }
            (other, ..) => panic!("unexpected {other}"),
        }
    }
    let refusal = refusal.expect("the store never filled up");
    assert!(refusal.contains("full"), "{refusal}");
    let full_at = Instant::now();

    let health = reqwest::get(server.at("/healthz")).await.unwrap();
    let degraded = health.status().as_u16();
    let health: common::Health = health.json().await.unwrap();
    let store_said = health.store.clone();

    // Subscribers keep their connection: heartbeats go on.
    let beat = next_event(&mut live).await;
    assert!(!beat.event.is_empty());

    // Retention frees space; publishing works again without anyone stepping in.
    let mut recovered = None;
    while full_at.elapsed() < Duration::from_secs(10) {
        let (status, stored, _) = post(&client, &server, "after".into()).await;
        if status == 201 {
            acknowledged.push(stored.unwrap());
            recovered = Some(full_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = recovered.expect("publishing never worked again");
    let health: common::Health = reqwest::get(server.at("/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (health.status.as_str(), health.store.as_str()),
        ("ok", "ok")
    );
    assert_eq!(degraded, 503, "{store_said}");
    assert!(store_said.contains("full"), "{store_said}");

    // Every acknowledged notification reached the live subscriber, once, in order.
    let expected: Vec<String> = acknowledged.iter().map(|n| n.id.clone()).collect();
    let mut received = Vec::new();
    while received.len() < expected.len() {
        let event = next_event(&mut live).await;
        if event.event == "message" {
            received.push(event.id);
        }
    }
    assert_eq!(received, expected);
    assert_eq!(
        received.iter().collect::<HashSet<_>>().len(),
        received.len()
    );
    server.stop().await.unwrap();

    let check: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    println!(
        "store full at 256 KiB: {} publishes acknowledged and all delivered once in order, \
         then 503 (\"{refusal}\"); /healthz said {degraded} \"{store_said}\"; publishing \
         worked again {:.1} s later; integrity_check: {check}",
        acknowledged.len(),
        recovered.as_secs_f64()
    );
}

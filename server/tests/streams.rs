//! The streams overview: `/api/streams` and `/sse/streams` against a real server.

mod support;

use std::time::Duration;

use common::{StreamSummary, StreamsOverview};
use support::{config, events, next_event, publish, subscribe, TestServer};

fn find<'a>(overview: &'a StreamsOverview, name: &str) -> &'a StreamSummary {
    overview
        .streams
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no stream {name} in {overview:?}"))
}

#[tokio::test]
async fn lists_stored_counts_newest_subscribers_and_publish_rates() {
    let server = TestServer::start(config()).await;
    let mut newest = None;
    for n in 0..3 {
        newest = Some(publish(&server, "alpha", &format!("a{n}"), "").await);
    }
    publish(&server, "beta", "b", "").await;
    let _one = subscribe(&server, "alpha", None).await;
    let _two = subscribe(&server, "alpha", None).await;
    let _quiet = subscribe(&server, "gamma", None).await;

    let overview: StreamsOverview = reqwest::get(server.at("/api/streams"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = overview.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["alpha", "beta", "gamma"], "by name");
    let alpha = find(&overview, "alpha");
    let newest = newest.unwrap();
    assert_eq!(alpha.stored, 3);
    assert_eq!(alpha.newest_id.as_deref(), Some(newest.id.as_str()));
    assert_eq!(alpha.newest_at.as_deref(), Some(newest.created_at.as_str()));
    assert_eq!(alpha.subscribers, 2);
    assert_eq!(alpha.publishes_last_minute, 3);
    assert_eq!(alpha.publishes_per_second.len(), 60);
    assert_eq!(alpha.publishes_per_second.iter().sum::<u32>(), 3);
    let beta = find(&overview, "beta");
    assert_eq!(
        (beta.stored, beta.subscribers, beta.publishes_last_minute),
        (1, 0, 1)
    );
    let gamma = find(&overview, "gamma");
    assert_eq!(
        (gamma.stored, gamma.subscribers, gamma.newest_id.clone()),
        (0, 1, None)
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_sse_overview_updates_every_interval() {
    let server = TestServer::start(config()).await;
    let response = reqwest::get(server.at("/sse/streams?interval_ms=500"))
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let mut updates = events(response);
    let first = next_event(&mut updates).await;
    assert_eq!(first.event, common::events::STREAMS);
    assert!(first.id.is_empty());
    let first: StreamsOverview = serde_json::from_str(&first.data).unwrap();
    assert!(first.streams.is_empty(), "{first:?}");

    publish(&server, "delta", "d", "").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let update: StreamsOverview =
            serde_json::from_str(&next_event(&mut updates).await.data).unwrap();
        if update
            .streams
            .iter()
            .any(|s| s.name == "delta" && s.stored == 1)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "delta never showed: {update:?}"
        );
    }

    let bad = reqwest::get(server.at("/sse/streams?interval_ms=1"))
        .await
        .unwrap();
    assert_eq!(bad.status(), reqwest::StatusCode::BAD_REQUEST);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_overview_answers_a_page_of_many_streams_with_the_total_a_prefix_and_an_order() {
    let server = TestServer::start(config()).await;
    for n in 0..200 {
        publish(&server, &format!("user.{n:03}"), "u", "").await;
    }
    for n in 0..40 {
        publish(&server, &format!("team.{n:02}"), "t", "").await;
    }
    for _ in 0..3 {
        publish(&server, "team.07", "again", "").await;
    }
    let newest = publish(&server, "user.150", "last", "").await;
    let get = |query: &'static str| {
        let url = server.at(&format!("/api/streams{query}"));
        async move { reqwest::get(url).await.unwrap() }
    };
    let page: StreamsOverview = get("").await.json().await.unwrap();
    assert_eq!(page.total, 240);
    assert_eq!(page.streams.len(), 100, "a page of 100 by default");
    assert_eq!(page.streams[0].name, "team.00", "by name");
    let users: StreamsOverview = get("?prefix=user.&limit=1000").await.json().await.unwrap();
    assert_eq!((users.total, users.streams.len()), (200, 200));
    assert!(users.streams.iter().all(|s| s.name.starts_with("user.")));
    let busiest: StreamsOverview = get("?sort=busiest&limit=2").await.json().await.unwrap();
    let names: Vec<&str> = busiest.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["team.07", "user.150"]);
    assert_eq!(busiest.total, 240);
    let newest_first: StreamsOverview = get("?sort=newest&limit=1&prefix=user.")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(newest_first.streams[0].newest_id, Some(newest.id));
    for bad in ["?limit=0", "?limit=1001", "?sort=loudest", "?limit=x"] {
        let refused = get(bad).await;
        assert_eq!(refused.status(), reqwest::StatusCode::BAD_REQUEST, "{bad}");
        let reason: common::ErrorBody = refused.json().await.unwrap();
        assert!(!reason.error.is_empty(), "{bad}");
    }
    // The page's card asks the SSE form for the busiest.
    let response = reqwest::get(server.at("/sse/streams?sort=busiest&limit=1"))
        .await
        .unwrap();
    let mut updates = events(response);
    let first: StreamsOverview =
        serde_json::from_str(&next_event(&mut updates).await.data).unwrap();
    assert_eq!(first.streams.len(), 1);
    assert_eq!(first.streams[0].name, "team.07");
    assert_eq!(first.total, 240);
    server.stop().await.unwrap();
}

//! Several streams on one connection (`/events?stream=a&stream=alerts.*`) against a real
//! server on both stores: streams named and matched, including ones created later, one
//! `Last-Event-ID` that resumes every stream exactly once across a restart, and the
//! selection's limits.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use eventsource_stream::Event;
use futures::{Stream, StreamExt};
use server::config::Config;
use support::{both_stores, events, publish, TestServer};

/// Opens `/events` with one `stream=` per selector.
async fn select(
    server: &TestServer,
    selectors: &[&str],
    last_event_id: Option<&str>,
) -> impl Stream<Item = Event> + Unpin {
    let pairs: Vec<_> = selectors.iter().map(|s| ("stream", *s)).collect();
    let mut request = reqwest::Client::new()
        .get(server.at("/events"))
        .query(&pairs);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    events(response)
}

/// The next `n` notifications with the SSE id each came with, skipping heartbeats and
/// failing on a reset.
async fn take(
    events: &mut (impl Stream<Item = Event> + Unpin),
    n: usize,
) -> Vec<(String, common::Notification)> {
    let mut got = Vec::new();
    while got.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {n} notifications within 10 s: {got:?}", got.len()))
            .expect("the stream ended");
        match event.event.as_str() {
            "message" => got.push((event.id, serde_json::from_str(&event.data).unwrap())),
            common::events::HEARTBEAT => {}
            other => panic!("unexpected {other} event: {}", event.data),
        }
    }
    got
}

/// Titles by stream, in the order each stream delivered them.
fn by_stream(got: &[(String, common::Notification)]) -> BTreeMap<String, Vec<String>> {
    let mut streams: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, n) in got {
        streams
            .entry(n.stream.clone())
            .or_default()
            .push(n.title.clone());
    }
    streams
}

fn titles(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(stream, titles)| {
            (
                stream.to_string(),
                titles.iter().map(|t| t.to_string()).collect(),
            )
        })
        .collect()
}

both_stores!(
    named_streams_and_patterns_share_one_connection_with_streams_created_later,
    one_id_resumes_every_stream_exactly_once_across_a_restart,
    an_entry_id_past_a_streams_newest_still_gets_a_reset,
    the_history_of_several_streams_resumes_on_events_with_nothing_lost_or_repeated,
);

async fn named_streams_and_patterns_share_one_connection_with_streams_created_later(base: Config) {
    let server = TestServer::start(base).await;
    publish(&server, "alerts.disk", "old", "").await;
    let mut events = select(&server, &["team", "alerts.*"], None).await;
    // A stream that existed, one named, one created after the connection opened, and two
    // the selection does not cover.
    for (stream, title) in [
        ("alerts.disk", "d1"),
        ("team", "t1"),
        ("other", "x"),
        ("alerts.net", "n1"),
        ("alerts", "not a match"),
        ("team", "t2"),
        ("alerts.net", "n2"),
        ("alerts.disk", "d2"),
    ] {
        publish(&server, stream, title, "").await;
    }
    let got = take(&mut events, 6).await;
    assert_eq!(
        by_stream(&got),
        titles(&[
            ("alerts.disk", &["d1", "d2"]),
            ("alerts.net", &["n1", "n2"]),
            ("team", &["t1", "t2"]),
        ])
    );
    let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    assert!(
        ids.iter().all(|id| id.contains(',')),
        "a subscriber of several streams gets positions, not entry ids: {ids:?}"
    );
    // Nothing else was sent: the next notification is the next one published.
    publish(&server, "team", "t3", "").await;
    assert_eq!(take(&mut events, 1).await[0].1.title, "t3");
    server.stop().await.unwrap();
}

async fn one_id_resumes_every_stream_exactly_once_across_a_restart(base: Config) {
    let server = TestServer::start(base.clone()).await;
    let selection = ["a", "b", "c.*"];
    let mut events = select(&server, &selection, None).await;
    for (stream, title) in [("a", "a1"), ("b", "b1"), ("c.x", "c1"), ("a", "a2")] {
        publish(&server, stream, title, "").await;
    }
    let got = take(&mut events, 4).await;
    let (last_id, _) = got.last().unwrap().clone();
    drop(events);
    server.stop().await.unwrap();

    // Published while the subscriber was away, on a new server over the same store: into
    // every stream it follows, a stream its pattern matches that did not exist yet, and
    // one it does not follow.
    let server = TestServer::start(base).await;
    for (stream, title) in [
        ("b", "b2"),
        ("c.new", "n1"),
        ("zzz", "not followed"),
        ("a", "a3"),
        ("c.x", "c2"),
    ] {
        publish(&server, stream, title, "").await;
    }
    let mut events = select(&server, &selection, Some(&last_id)).await;
    let resumed = take(&mut events, 4).await;
    let mut all = got.clone();
    all.extend(resumed.iter().cloned());
    assert_eq!(
        by_stream(&all),
        titles(&[
            ("a", &["a1", "a2", "a3"]),
            ("b", &["b1", "b2"]),
            ("c.new", &["n1"]),
            ("c.x", &["c1", "c2"]),
        ]),
        "every stream once, in order, after one Last-Event-ID"
    );
    publish(&server, "b", "b3", "").await;
    assert_eq!(
        take(&mut events, 1).await[0].1.title,
        "b3",
        "and nothing twice"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_subscriber_of_one_stream_keeps_plain_entry_ids_and_can_widen_from_one() {
    let server = TestServer::start(support::config()).await;
    let mut one = select(&server, &["a"], None).await;
    publish(&server, "a", "a1", "").await;
    let (id, first) = take(&mut one, 1).await.remove(0);
    assert_eq!(id, first.id, "one stream: the entry's own id, as before");
    drop(one);
    publish(&server, "a", "a2", "").await;
    publish(&server, "b", "b1", "").await;
    // The same id resumes a wider selection: every stream from that point.
    let mut wide = select(&server, &["a", "b"], Some(&id)).await;
    let got = take(&mut wide, 2).await;
    assert_eq!(by_stream(&got), titles(&[("a", &["a2"]), ("b", &["b1"])]));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_reset_names_its_stream_and_the_others_go_on() {
    let server = TestServer::start(Config {
        retention: server::store::Retention::new(Some(2), None),
        prune_every: Duration::from_millis(20),
        ..support::config()
    })
    .await;
    let mut events = select(&server, &["short", "kept"], None).await;
    publish(&server, "short", "s0", "").await;
    publish(&server, "kept", "k0", "").await;
    let got = take(&mut events, 2).await;
    let (position, _) = got.last().unwrap().clone();
    drop(events);
    for n in 1..=4 {
        publish(&server, "short", &format!("s{n}"), "").await;
    }
    publish(&server, "kept", "k1", "").await;
    // Retention keeps 2 of `short`: the entries after the position are gone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut events = select(&server, &["short", "kept"], Some(&position)).await;
    let mut reset = None;
    let mut kept = Vec::new();
    while reset.is_none() || kept.is_empty() {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("a reset and the kept stream's notification within 10 s")
            .unwrap();
        match event.event.as_str() {
            "reset" => reset = Some(event),
            "message" => {
                let n: common::Notification = serde_json::from_str(&event.data).unwrap();
                if n.stream == "kept" {
                    kept.push(n.title);
                }
            }
            _ => {}
        }
    }
    let reset = reset.unwrap();
    let data: serde_json::Value = serde_json::from_str(&reset.data).unwrap();
    assert_eq!(data["stream"], "short", "{}", reset.data);
    assert_eq!(
        kept,
        ["k1"],
        "the other stream goes on from its own position"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_and_excessive_selections_get_a_400_with_the_reason() {
    let server = TestServer::start(support::config()).await;
    let client = reqwest::Client::new();
    let too_many: Vec<String> = (0..=common::selector::MAX_SELECTORS)
        .map(|n| format!("stream=s{n}"))
        .collect();
    for (query, reason) in [
        ("stream=a%20b", "not a stream selector"),
        ("stream=a&stream=", "not a stream selector"),
        ("stream=a*b", "not a stream selector"),
        (too_many.join("&").as_str(), "at most 16"),
    ] {
        let response = client
            .get(server.at(&format!("/events?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            reqwest::StatusCode::BAD_REQUEST,
            "{query}"
        );
        let body: common::ErrorBody = response.json().await.unwrap();
        assert!(body.error.contains(reason), "{query}: {}", body.error);
    }
    // More streams than one connection follows, through a pattern.
    for n in 0..=common::selector::MAX_STREAMS {
        publish(&server, &format!("many.{n}"), "x", "").await;
    }
    let response = client
        .get(server.at("/events?stream=many.*"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::BAD_REQUEST);
    let body: common::ErrorBody = response.json().await.unwrap();
    assert!(body.error.contains("at most 64"), "{}", body.error);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_subscriber_that_got_only_its_greeting_resumes_from_it() {
    let server = TestServer::start(support::config()).await;
    let mut events = select(&server, &["a", "b.*"], None).await;
    let greeting = events.next().await.unwrap();
    assert_eq!(greeting.event, common::events::HEARTBEAT);
    assert!(
        !greeting.id.is_empty(),
        "the first heartbeat names the position"
    );
    drop(events);
    publish(&server, "a", "a1", "").await;
    publish(&server, "b.new", "b1", "").await;
    let mut events = select(&server, &["a", "b.*"], Some(&greeting.id)).await;
    let got = take(&mut events, 2).await;
    assert_eq!(
        by_stream(&got),
        titles(&[("a", &["a1"]), ("b.new", &["b1"])])
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_unknown_id_resets_the_streams_it_covers_and_later_streams_start_whole() {
    let server = TestServer::start(support::config()).await;
    publish(&server, "a", "old", "").await;
    let mut events = select(&server, &["a", "n.*"], Some("99999,a:99999")).await;
    let mut resets = Vec::new();
    while resets.is_empty() {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("a reset within 10 s")
            .unwrap();
        if event.event == common::events::RESET {
            let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
            resets.push(data["stream"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(resets, ["a"]);
    // A stream created now is followed from the clock, not reset: its first entry arrives.
    publish(&server, "n.x", "first", "").await;
    publish(&server, "a", "next", "").await;
    let got = take(&mut events, 2).await;
    assert_eq!(
        by_stream(&got),
        titles(&[("a", &["next"]), ("n.x", &["first"])])
    );
    server.stop().await.unwrap();
}

/// Positions of several streams may lie past one stream's newest id; an entry id there
/// was never issued (or the store lost it), and still gets a reset, as ever.
async fn an_entry_id_past_a_streams_newest_still_gets_a_reset(base: Config) {
    let server = TestServer::start(base).await;
    let stored = publish(&server, "s", "only", "").await;
    let id: server::store::EventId = stored.id.parse().unwrap();
    let never_issued = if stored.id.contains('-') {
        server::store::EventId::new(id.major, id.minor + 5)
    } else {
        server::store::EventId::new(id.major + 5, 0)
    };
    let mut events = select(&server, &["s"], Some(&never_issued.to_string())).await;
    let reset = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("a reset within 10 s")
            .unwrap();
        assert_ne!(event.event, "message", "replayed from an id never issued");
        if event.event == common::events::RESET {
            break event;
        }
    };
    assert!(reset.data.contains("\"stream\":\"s\""), "{}", reset.data);
    server.stop().await.unwrap();
}

/// `GET /api/notifications` with the same selectors as `/events`.
async fn history(server: &TestServer, selectors: &[&str], limit: usize) -> common::History {
    let mut pairs: Vec<_> = selectors
        .iter()
        .map(|s| ("stream", s.to_string()))
        .collect();
    pairs.push(("limit", limit.to_string()));
    let response = reqwest::Client::new()
        .get(server.at("/api/notifications"))
        .query(&pairs)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    response.json().await.unwrap()
}

async fn the_history_of_several_streams_resumes_on_events_with_nothing_lost_or_repeated(
    base: Config,
) {
    let server = TestServer::start(base).await;
    for (stream, title) in [
        ("team", "t1"),
        ("alerts.disk", "d1"),
        ("other", "x1"),
        ("team", "t2"),
        ("alerts.net", "n1"),
        ("alerts.disk", "d2"),
    ] {
        publish(&server, stream, title, "").await;
    }
    let selectors = ["team", "alerts.*"];
    // The newest four of the covered streams together, oldest first, in publish order.
    let page = history(&server, &selectors, 4).await;
    let listed: Vec<&str> = page
        .notifications
        .iter()
        .map(|n| n.title.as_str())
        .collect();
    assert_eq!(listed, ["d1", "t2", "n1", "d2"]);
    // Published after the page was read, to a covered stream, a new one and one not
    // covered: the connection from the page's position gets exactly the covered ones.
    for (stream, title) in [
        ("team", "t3"),
        ("other", "x2"),
        ("alerts.cpu", "c1"),
        ("alerts.disk", "d3"),
    ] {
        publish(&server, stream, title, "").await;
    }
    let position = page.last_event_id.expect("a position");
    let mut events = select(&server, &selectors, Some(&position)).await;
    let got = take(&mut events, 3).await;
    assert_eq!(
        by_stream(&got),
        titles(&[
            ("alerts.cpu", &["c1"]),
            ("alerts.disk", &["d3"]),
            ("team", &["t3"]),
        ])
    );
    publish(&server, "team", "t4", "").await;
    assert_eq!(take(&mut events, 1).await[0].1.title, "t4");
    // A page of several streams is the newest; paging with `after` is for one stream.
    let response = reqwest::Client::new()
        .get(server.at("/api/notifications?stream=team&stream=alerts.*&after=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::BAD_REQUEST);
    let reason: serde_json::Value = response.json().await.unwrap();
    assert!(reason["error"]
        .as_str()
        .unwrap()
        .contains("`after` pages one stream"));
    server.stop().await.unwrap();
}

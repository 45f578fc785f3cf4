//! Notification streams against a real server on port 0, each test once with a real
//! SQLite file and once with a real Redis: isolation, replay, the replay/live race,
//! retention resets, heartbeats, the trigger, the demo counter, and bad input.

mod support;

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use server::config::Config;
use server::store::Retention;
use support::{both_stores, events, next_event, next_notification, publish, subscribe, TestServer};

both_stores!(
    streams_are_isolated,
    replays_after_last_event_id_by_header_and_by_query_then_goes_live,
    subscribers_joining_during_publishing_get_every_event_exactly_once,
    a_resume_point_older_than_retention_gets_a_reset,
    heartbeats_carry_their_interval,
    trigger_publishes_by_post_and_by_get_to_messages_or_the_named_stream,
    the_demo_counter_counts_up_and_goes_on_after_a_restart,
    history_pages_oldest_first_and_checks_its_parameters,
    injection_attempts_and_bad_input_are_refused_or_neutralised,
    clock_ms_adds_time_events_that_never_move_the_resume_position,
);

async fn streams_are_isolated(base: Config) {
    let server = TestServer::start(base).await;
    let mut a = events(subscribe(&server, "alpha", None).await);
    let mut b = events(subscribe(&server, "beta", None).await);
    let a1 = publish(&server, "alpha", "a1", "").await;
    let b1 = publish(&server, "beta", "b1", "").await;
    let a2 = publish(&server, "alpha", "a2", "").await;
    assert_eq!(next_notification(&mut a).await, a1);
    assert_eq!(next_notification(&mut a).await, a2);
    assert_eq!(next_notification(&mut b).await, b1);
    let b2 = publish(&server, "beta", "b2", "").await;
    assert_eq!(
        next_notification(&mut b).await,
        b2,
        "beta got nothing of alpha's"
    );
    assert_eq!(a1.stream, "alpha");
    assert_eq!(a1.level, common::Level::Info);
    server.stop().await.unwrap();
}

async fn replays_after_last_event_id_by_header_and_by_query_then_goes_live(base: Config) {
    let server = TestServer::start(base).await;
    let mut published = Vec::new();
    for n in 0..5 {
        published.push(publish(&server, "r", &format!("n{n}"), "").await);
    }

    let mut by_header = events(subscribe(&server, "r", Some(&published[1].id)).await);
    let query = format!("/events?stream=r&lastEventId={}", published[1].id);
    let mut by_query = events(reqwest::get(server.at(&query)).await.unwrap());
    // A blank header (as some proxies and clients send) does not hide the query's id.
    let blank_header = reqwest::Client::new()
        .get(server.at(&query))
        .header("Last-Event-ID", " ")
        .send()
        .await
        .unwrap();
    let mut by_query_blank_header = events(blank_header);
    for stream in [&mut by_header, &mut by_query, &mut by_query_blank_header] {
        for expected in &published[2..] {
            assert_eq!(&next_notification(stream).await, expected);
        }
    }
    let live = publish(&server, "r", "live", "").await;
    assert_eq!(next_notification(&mut by_header).await, live);
    assert_eq!(next_notification(&mut by_query).await, live);
    server.stop().await.unwrap();
}

/// Publishes continuously while subscribers join from earlier ids: each must get every id
/// after its own exactly once, in order, across the switch from history to live.
async fn subscribers_joining_during_publishing_get_every_event_exactly_once(base: Config) {
    const TOTAL: usize = 300;
    const SUBSCRIBERS: usize = 8;
    let server = Arc::new(TestServer::start(base).await);
    let (progress, watch) = tokio::sync::watch::channel(Vec::<String>::new());

    let publisher = {
        let server = server.clone();
        tokio::spawn(async move {
            for n in 0..TOTAL {
                let title = if n == TOTAL - 1 {
                    "END".to_owned()
                } else {
                    format!("n{n}")
                };
                let stored = publish(&server, "race", &title, "").await;
                progress.send_modify(|ids| ids.push(stored.id));
            }
        })
    };
    let subscribers: Vec<_> = (0..SUBSCRIBERS)
        .map(|i| {
            let server = server.clone();
            let mut watch = watch.clone();
            tokio::spawn(async move {
                let start_at = 1 + i * TOTAL / (2 * SUBSCRIBERS);
                let start =
                    watch.wait_for(|ids| ids.len() > start_at).await.unwrap()[start_at].clone();
                let mut events = events(subscribe(&server, "race", Some(&start)).await);
                let mut received = Vec::new();
                loop {
                    let notification = next_notification(&mut events).await;
                    received.push(notification.id);
                    if notification.title == "END" {
                        break;
                    }
                }
                (start, received)
            })
        })
        .collect();

    publisher.await.unwrap();
    let published = watch.borrow().clone();
    for subscriber in subscribers {
        let (start, received) = subscriber.await.unwrap();
        let from = published.iter().position(|id| *id == start).unwrap() + 1;
        assert_eq!(received, published[from..], "subscriber from {start}");
    }
    Arc::into_inner(server).unwrap().stop().await.unwrap();
}

async fn a_resume_point_older_than_retention_gets_a_reset(base: Config) {
    let server = TestServer::start(Config {
        retention: Retention::new(Some(2), None),
        prune_every: Duration::from_millis(20),
        ..base
    })
    .await;
    let mut published = Vec::new();
    for n in 0..5 {
        published.push(publish(&server, "short", &format!("n{n}"), "").await);
    }
    let history_url = server.at("/api/notifications?stream=short");
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let history: common::History = reqwest::get(&history_url)
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if history.notifications.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("retention did not prune");

    let mut live = Vec::new();
    // Pruned, never issued, and not an id of this server at all (a browser's storage from
    // another backend): all three are told to reload.
    for stale in [published[0].id.as_str(), "999999", "x1", "1-2"] {
        let mut stream = events(subscribe(&server, "short", Some(stale)).await);
        assert_eq!(
            next_event(&mut stream).await.event,
            common::events::HEARTBEAT
        );
        let reset = next_event(&mut stream).await;
        assert_eq!(reset.event, common::events::RESET, "after {stale}");
        live.push(publish(&server, "short", "after reset", "").await);
        assert_eq!(&next_notification(&mut stream).await, live.last().unwrap());

        // The reset carries the id to go on from: resuming there is no reset again.
        let mut resumed = events(subscribe(&server, "short", Some(&reset.id)).await);
        assert_eq!(
            next_event(&mut resumed).await.event,
            common::events::HEARTBEAT
        );
        assert_eq!(&next_notification(&mut resumed).await, live.last().unwrap());
    }
    // History paging from any of those ids says so instead of answering "caught up".
    for stale in [published[0].id.as_str(), "999999", "abc", "3-1"] {
        let response =
            reqwest::get(server.at(&format!("/api/notifications?stream=short&after={stale}")))
                .await
                .unwrap();
        assert_eq!(response.status(), StatusCode::GONE, "after={stale}");
        let error: common::ErrorBody = response.json().await.unwrap();
        assert!(
            error.error.contains("reload the newest history"),
            "{}",
            error.error
        );
    }
    // A resume point that is still covered (the two newest are kept) replays, no reset.
    let [.., second_newest, newest] = &live[..] else {
        unreachable!("four were published")
    };
    let mut stream = events(subscribe(&server, "short", Some(&second_newest.id)).await);
    assert_eq!(
        next_event(&mut stream).await.event,
        common::events::HEARTBEAT
    );
    assert_eq!(&next_notification(&mut stream).await, newest);
    server.stop().await.unwrap();
}

async fn heartbeats_carry_their_interval(base: Config) {
    let server = TestServer::start(Config {
        heartbeat: Duration::from_millis(100),
        ..base
    })
    .await;
    let mut stream = events(subscribe(&server, "quiet", None).await);
    let first = next_event(&mut stream).await;
    assert_eq!(first.event, common::events::HEARTBEAT);
    assert!(first.retry.is_some(), "the first event carries retry:");
    for _ in 0..2 {
        let beat = next_event(&mut stream).await;
        assert_eq!(beat.event, common::events::HEARTBEAT);
        let data: common::Heartbeat = serde_json::from_str(&beat.data).unwrap();
        assert_eq!(data.interval_ms, 100);
    }
    server.stop().await.unwrap();
}

async fn trigger_publishes_by_post_and_by_get_to_messages_or_the_named_stream(base: Config) {
    let server = TestServer::start(base).await;
    let mut messages = events(subscribe(&server, "messages", None).await);
    let client = reqwest::Client::new();
    let posted = client.post(server.at("/trigger")).send().await.unwrap();
    assert_eq!(posted.status(), StatusCode::CREATED);
    let posted: common::Notification = posted.json().await.unwrap();
    let got = client.get(server.at("/trigger")).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    let got: common::Notification = got.json().await.unwrap();
    for expected in [posted, got] {
        assert!(
            expected.title.starts_with("Triggered at "),
            "{}",
            expected.title
        );
        assert_eq!(expected.stream, "messages");
        assert_eq!(next_notification(&mut messages).await, expected);
    }

    // Any stream, with the server's time (nanoseconds, UTC) in the title.
    let mut ops = events(subscribe(&server, "ops", None).await);
    let to_ops = client
        .post(server.at("/trigger?stream=ops"))
        .send()
        .await
        .unwrap();
    assert_eq!(to_ops.status(), StatusCode::CREATED);
    let to_ops: common::Notification = to_ops.json().await.unwrap();
    assert_eq!(to_ops.stream, "ops");
    let time = to_ops.title.strip_prefix("Triggered at ").unwrap();
    assert_eq!(time.len(), "2026-01-01T00:00:00.123456789Z".len(), "{time}");
    assert_eq!(next_notification(&mut ops).await, to_ops);
    let bad = client
        .post(server.at("/trigger?stream=a%20b"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    server.stop().await.unwrap();
}

async fn the_demo_counter_counts_up_and_goes_on_after_a_restart(base: Config) {
    let demo = Config { demo: true, ..base };
    let server = TestServer::start(demo.clone()).await;
    let mut counter = events(subscribe(&server, "counter", None).await);
    let first: u64 = next_notification(&mut counter).await.title.parse().unwrap();
    let second: u64 = next_notification(&mut counter).await.title.parse().unwrap();
    let third: u64 = next_notification(&mut counter).await.title.parse().unwrap();
    assert_eq!((second, third), (first + 1, first + 2));
    server.stop().await.unwrap();

    // Same database: the count resumes above where it stopped.
    let server = TestServer::start(demo).await;
    let mut counter = events(subscribe(&server, "counter", None).await);
    let resumed: u64 = next_notification(&mut counter).await.title.parse().unwrap();
    assert!(resumed > third, "{resumed} after {third}");
    server.stop().await.unwrap();
}

async fn history_pages_oldest_first_and_checks_its_parameters(base: Config) {
    let server = TestServer::start(base).await;
    let mut published = Vec::new();
    for n in 0..5 {
        published.push(publish(&server, "h", &format!("n{n}"), "").await);
    }
    let get = |query: String| {
        let url = server.at(&format!("/api/notifications?{query}"));
        async move { reqwest::get(url).await.unwrap() }
    };
    let latest: common::History = get("stream=h&limit=2".into()).await.json().await.unwrap();
    assert_eq!(latest.notifications, published[3..]);
    assert_eq!(latest.last_event_id.as_ref(), Some(&published[4].id));
    let page: common::History = get(format!("stream=h&after={}&limit=2", published[0].id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page.notifications, published[1..3]);
    let default_stream: common::History = get(String::new()).await.json().await.unwrap();
    assert!(
        default_stream.notifications.is_empty(),
        "`messages` is another stream"
    );
    // An empty stream's page still says where to resume: what is published after it
    // follows that position.
    let empty: common::History = get("stream=later".into()).await.json().await.unwrap();
    let position = empty.last_event_id.expect("a position for an empty stream");
    let first = publish(&server, "later", "first", "").await;
    let after: common::History = get(format!("stream=later&after={position}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after.notifications, [first]);

    for (query, word) in [
        ("stream=h&limit=0", "limit"),
        ("stream=h&limit=1001", "limit"),
        ("stream=h&limit=x", "limit"),
        ("stream=bad%20name", "stream"),
    ] {
        let response = get(query.into()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let error: common::ErrorBody = response.json().await.unwrap();
        assert!(error.error.contains(word), "{query}: {}", error.error);
    }
    let bad_stream = reqwest::get(server.at("/events?stream=a/b")).await.unwrap();
    assert_eq!(bad_stream.status(), StatusCode::BAD_REQUEST);
    server.stop().await.unwrap();
}

/// Nothing a publisher sends can add an SSE field or event; bad input gets a 4xx with a
/// JSON reason and leaves stored data alone.
async fn injection_attempts_and_bad_input_are_refused_or_neutralised(base: Config) {
    let server = TestServer::start(base).await;
    let before = publish(&server, "inj", "before", "").await;
    let mut stream = events(subscribe(&server, "inj", Some(&before.id)).await);
    let client = reqwest::Client::new();
    let post_json = |body: serde_json::Value| {
        let request = client.post(server.at("/api/notifications")).json(&body);
        async move { request.send().await.unwrap() }
    };

    // Line breaks in a body are data, not SSE structure.
    let sneaky = [
        "x\n\nevent: injected\ndata: evil\n\nid: 999\n",
        "a\r\nevent: y\rdata: z\r\r",
        "tab\there",
    ];
    let mut accepted = Vec::new();
    for body in sneaky {
        let response =
            post_json(serde_json::json!({ "stream": "inj", "title": "t", "body": body })).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let stored: common::Notification = response.json().await.unwrap();
        assert_eq!(stored.body, body);
        accepted.push(stored);
    }

    let refused: Vec<(serde_json::Value, &str)> = vec![
        (
            serde_json::json!({ "stream": "inj", "title": "t\n\nevent: x" }),
            "control character",
        ),
        (
            serde_json::json!({ "stream": "inj", "title": "t\rdata: x" }),
            "control character",
        ),
        (
            serde_json::json!({ "stream": "inj", "title": "nul\u{0}" }),
            "control character",
        ),
        (
            serde_json::json!({ "stream": "inj", "title": "t", "body": "nul\u{0}" }),
            "control character",
        ),
        (serde_json::json!({ "stream": "inj", "title": "" }), "title"),
        (
            serde_json::json!({ "stream": "inj", "title": "   " }),
            "title",
        ),
        (
            serde_json::json!({ "stream": "inj", "title": "x".repeat(201) }),
            "200",
        ),
        (
            serde_json::json!({ "stream": "inj", "title": "t", "body": "é".repeat(4001) }),
            "4000",
        ),
        (serde_json::json!({ "stream": "inj", "title": 5 }), "title"),
        (
            serde_json::json!({ "stream": "inj", "title": "t", "level": "fatal" }),
            "level",
        ),
        (
            serde_json::json!({ "stream": "inj", "title": "t", "colour": "red" }),
            "colour",
        ),
        (
            serde_json::json!({ "stream": "a b", "title": "t" }),
            "stream",
        ),
        (serde_json::json!({ "body": "no title" }), "title"),
    ];
    for (body, word) in refused {
        let response = post_json(body.clone()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error: common::ErrorBody = response.json().await.unwrap();
        assert!(error.error.contains(word), "{body}: {}", error.error);
    }
    let raw = |content: Vec<u8>| {
        let request = client
            .post(server.at("/api/notifications"))
            .header("content-type", "application/json")
            .body(content);
        async move { request.send().await.unwrap() }
    };
    for (content, status) in [
        (b"{\"title\": ".to_vec(), StatusCode::BAD_REQUEST),
        (
            b"{\"title\": \"\xff\xfe\"}".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{{\"title\": \"{}\"}}", "x".repeat(100_000)).into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let response = raw(content).await;
        assert_eq!(response.status(), status);
        let error: common::ErrorBody = response.json().await.unwrap();
        assert!(!error.error.is_empty());
    }
    let not_json = client
        .post(server.at("/api/notifications"))
        .body("title=x")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // The subscriber saw exactly the accepted ones, each as one plain message event.
    let after = publish(&server, "inj", "after", "").await;
    let mut seen = Vec::new();
    loop {
        let event = next_event(&mut stream).await;
        assert!(
            ["message", "heartbeat"].contains(&event.event.as_str()),
            "unexpected event {event:?}"
        );
        if event.event == "message" {
            let notification: common::Notification = serde_json::from_str(&event.data).unwrap();
            assert_eq!(event.id, notification.id);
            let done = notification.id == after.id;
            seen.push(notification);
            if done {
                break;
            }
        }
    }
    accepted.push(after);
    assert_eq!(seen, accepted);
    let history: common::History = reqwest::get(server.at("/api/notifications?stream=inj"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        history.notifications.len(),
        1 + sneaky.len() + 1,
        "stored data is intact"
    );
    server.stop().await.unwrap();
}

async fn clock_ms_adds_time_events_that_never_move_the_resume_position(base: Config) {
    let server = TestServer::start(base).await;
    let response = reqwest::get(server.at("/events?stream=both&clock_ms=50"))
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let mut stream = events(response);
    // The greeting names where the connection starts; ticks carry no id of their own, so
    // the parser keeps that one.
    let greeting = next_event(&mut stream).await;
    assert_eq!(greeting.event, common::events::HEARTBEAT);
    let mut ticks = 0;
    while ticks < 3 {
        let event = next_event(&mut stream).await;
        if event.event == common::events::TIME {
            assert_eq!(event.id, greeting.id, "a tick carries no id: {event:?}");
            assert!(
                event.data.parse::<chrono::DateTime<chrono::Utc>>().is_ok(),
                "{event:?}"
            );
            ticks += 1;
        }
    }
    let sent = publish(&server, "both", "with the clock", "").await;
    let received = next_notification(&mut stream).await;
    assert_eq!(received, sent);
    // After the notification, ticks go on and carry no id of their own: the parser keeps
    // the last id, which must stay the notification's.
    loop {
        let event = next_event(&mut stream).await;
        if event.event == common::events::TIME {
            assert_eq!(event.id, sent.id);
            break;
        }
    }

    let bad = reqwest::get(server.at("/events?stream=both&clock_ms=5"))
        .await
        .unwrap();
    assert_eq!(bad.status(), reqwest::StatusCode::BAD_REQUEST);
    let reason: common::ErrorBody = bad.json().await.unwrap();
    assert!(reason.error.contains("clock_ms"), "{reason:?}");
    server.stop().await.unwrap();
}

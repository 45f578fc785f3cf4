//! Faults on the link between a client and the server, made by `e2e::fault_proxy`: latency
//! with jitter, a narrow link under a burst, bytes cut at every boundary, resets mid-frame,
//! a 30 s blackhole, and a half-open link. All at the server's default settings, on both
//! stores. Each test asserts that every acknowledged notification reaches every live
//! subscriber exactly once and in order, and prints what it survived.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e::fault_proxy::{FaultProxy, Faults};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use server::config::Config;
use support::{both_stores, TestServer};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_server");

both_stores!(
    a_slow_jittery_link_delivers_everything_once_in_order,
    a_narrow_link_under_a_burst_delivers_everything_once_in_order,
    bytes_cut_at_every_boundary_change_nothing,
    resets_mid_frame_lose_and_repeat_nothing,
);

/// The two long faults, each on both stores, all four at once: they wait (30 s and more
/// each) rather than compute, and one after another they were most of this file's 80 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_s_blackhole_and_a_half_open_link_on_both_stores_lose_nothing() {
    let runs = [
        tokio::spawn(a_30_s_blackhole_heals_and_listen_resumes(support::config())),
        tokio::spawn(a_30_s_blackhole_heals_and_listen_resumes(
            support::redis_config(),
        )),
        tokio::spawn(a_half_open_link_is_freed_by_the_server_and_listen_moves_on(
            support::config(),
        )),
        tokio::spawn(a_half_open_link_is_freed_by_the_server_and_listen_moves_on(
            support::redis_config(),
        )),
    ];
    for run in runs {
        if let Err(err) = run.await {
            std::panic::resume_unwind(err.into_panic());
        }
    }
}

/// Where an id (SQLite's `42`, Redis's `1700000000000-3`) is in its stream's order.
fn order(id: &str) -> (u64, u64) {
    let (time, seq) = id.split_once('-').unwrap_or((id, "0"));
    (time.parse().unwrap(), seq.parse().unwrap())
}

/// A server with `base` and a proxy in front of it.
async fn server_behind_proxy(base: Config) -> (TestServer, FaultProxy) {
    let server = TestServer::start(base).await;
    let addr = server.url.trim_start_matches("http://").parse().unwrap();
    let proxy = FaultProxy::start(addr).await.unwrap();
    (server, proxy)
}

/// Publishes `count` notifications to `stream` straight to the server, `parallel` at a
/// time, each with a body of `body_len` characters; returns the acknowledged ids in
/// stream order.
async fn publish_many(
    server: &TestServer,
    stream: &str,
    count: usize,
    parallel: usize,
    body_len: usize,
) -> Vec<String> {
    let client = reqwest::Client::new();
    let body = "x".repeat(body_len);
    let mut ids: Vec<String> = futures::stream::iter(0..count)
        .map(|n| {
            let request = client.post(server.at("/api/notifications")).json(
                &serde_json::json!({"stream": stream, "title": format!("n{n}"), "body": body}),
            );
            async move {
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), reqwest::StatusCode::CREATED);
                let stored: common::Notification = response.json().await.unwrap();
                stored.id
            }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    ids.sort_unstable_by_key(|id| order(id));
    ids
}

/// A subscriber of `stream` at `url` (the proxy): the ids of the notifications it gets,
/// through a channel; its first event (the greeting) has come when this returns.
async fn subscriber(url: &str, stream: &str) -> mpsc::UnboundedReceiver<(String, String)> {
    let response = reqwest::get(format!("{url}/events?stream={stream}"))
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    // Not `support::events`: a stream the server cuts (the half-open test) just ends here.
    let mut events = response.bytes_stream().eventsource();
    let greeting = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("no greeting")
        .expect("the stream ended")
        .expect("malformed SSE");
    assert_eq!(greeting.event, common::events::HEARTBEAT);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(event)) = events.next().await {
            if event.event == "message" {
                let notification: common::Notification = serde_json::from_str(&event.data).unwrap();
                if tx.send((event.id, notification.body)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// The next `count` ids from `received`, failing after `limit`.
async fn receive(
    received: &mut mpsc::UnboundedReceiver<(String, String)>,
    count: usize,
    limit: Duration,
) -> Vec<String> {
    let mut ids = Vec::with_capacity(count);
    let deadline = tokio::time::Instant::now() + limit;
    while ids.len() < count {
        match tokio::time::timeout_at(deadline, received.recv()).await {
            Ok(Some((id, _))) => ids.push(id),
            _ => panic!(
                "got {} of {count} notifications within {limit:?}",
                ids.len()
            ),
        }
    }
    ids
}

async fn a_slow_jittery_link_delivers_everything_once_in_order(base: Config) {
    let (server, proxy) = server_behind_proxy(base).await;
    proxy.set(Faults {
        latency: Duration::from_millis(200),
        jitter: Duration::from_millis(100),
        ..Faults::default()
    });
    let started = Instant::now();
    let mut received = subscriber(&proxy.url(), "slow").await;
    let connect = started.elapsed();
    let sent = publish_many(&server, "slow", 300, 8, 100).await;
    let published = Instant::now();
    let got = receive(&mut received, sent.len(), Duration::from_secs(30)).await;
    assert_eq!(got, sent, "every notification once, in order");
    println!(
        "200 ± 100 ms each way: connected in {connect:?}; all {} arrived {:?} after the last \
         was acknowledged",
        sent.len(),
        published.elapsed()
    );
}

async fn a_narrow_link_under_a_burst_delivers_everything_once_in_order(base: Config) {
    const RATE: u64 = 64 * 1024;
    let (server, proxy) = server_behind_proxy(base).await;
    proxy.set(Faults {
        bandwidth: Some(RATE),
        ..Faults::default()
    });
    let mut received = subscriber(&proxy.url(), "narrow").await;
    // More than a subscriber's buffer (1,024 by default): it falls behind the live
    // channel and catches up from the store.
    let started = Instant::now();
    let sent = publish_many(&server, "narrow", 1_500, 16, 150).await;
    let published = started.elapsed();
    let got = receive(&mut received, sent.len(), Duration::from_secs(60)).await;
    let took = started.elapsed();
    assert_eq!(got, sent, "every notification once, in order");
    let lagged = support::metric(&server, "notify_hub_lagged_subscribers_total")
        .await
        .unwrap_or(0.0);
    println!(
        "64 KB/s: a burst of {} published in {published:?} arrived whole in {took:?}; the \
         subscriber fell behind its buffer {lagged} times",
        sent.len()
    );
}

async fn bytes_cut_at_every_boundary_change_nothing(base: Config) {
    let (_server, proxy) = server_behind_proxy(base).await;
    // One byte at a time both ways: the request head too.
    proxy.set(Faults {
        split: Some(1),
        ..Faults::default()
    });
    let mut received = subscriber(&proxy.url(), "cut").await;
    let client = reqwest::Client::new();
    let mut bodies = Vec::new();
    for n in 0..60 {
        if n == 30 {
            proxy.set(Faults {
                split: Some(7),
                ..Faults::default()
            });
        }
        let body = format!("línea {n}\nsecond line: ü → 🚀\r\nthird: data: id: {n}");
        let response = client
            .post(format!("{}/api/notifications", proxy.url()))
            .json(&serde_json::json!({"stream": "cut", "title": format!("n{n}"), "body": body}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
        let stored: common::Notification = response.json().await.unwrap();
        bodies.push(stored.body);
    }
    let mut got = Vec::new();
    while got.len() < bodies.len() {
        let (_, body) = tokio::time::timeout(Duration::from_secs(30), received.recv())
            .await
            .expect("a notification went missing")
            .unwrap();
        got.push(body);
    }
    assert_eq!(got, bodies, "every body whole, once, in order");
    println!(
        "bytes one at a time, then in pieces of 1 to 7, both ways: {} publishes through \
         the proxy and their deliveries intact",
        bodies.len()
    );
}

/// `server listen --json` on `selectors` at `url`, each printed line through a channel.
fn listen(url: &str, stream: &str) -> (Child, mpsc::UnboundedReceiver<common::Notification>) {
    let mut child = Command::new(BIN)
        .args(["listen", "--url", url, "--stream", stream, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// The next `count` notifications `listen` prints, as ids, failing after `limit`.
async fn listened(
    lines: &mut mpsc::UnboundedReceiver<common::Notification>,
    count: usize,
    limit: Duration,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut ids = Vec::with_capacity(count);
    while ids.len() < count {
        match tokio::time::timeout_at(deadline, lines.recv()).await {
            Ok(Some(notification)) => ids.push(notification.id),
            _ => panic!("listen printed {} of {count} within {limit:?}", ids.len()),
        }
    }
    ids
}

/// Waits until `listen` is connected through `proxy`: one publish, printed.
async fn listening(
    server: &TestServer,
    stream: &str,
    lines: &mut mpsc::UnboundedReceiver<common::Notification>,
) -> String {
    // listen connects without a Last-Event-ID: what was published before it may not come.
    loop {
        let id = publish_many(server, stream, 1, 1, 0).await.remove(0);
        if let Ok(Some(notification)) =
            tokio::time::timeout(Duration::from_millis(500), lines.recv()).await
        {
            if notification.id == id {
                return id;
            }
            // An earlier probe, late: the next one is this one.
            let next = listened(lines, 1, Duration::from_secs(10)).await;
            assert_eq!(next, std::slice::from_ref(&id));
            return id;
        }
    }
}

async fn resets_mid_frame_lose_and_repeat_nothing(base: Config) {
    let (server, proxy) = server_behind_proxy(base).await;
    let (_listener, mut lines) = listen(&proxy.url(), "reset");
    listening(&server, "reset", &mut lines).await;
    // Every connection from now on is reset after 4,000 bytes, inside a frame (a frame is
    // ~350 bytes, the response head and first events ~300).
    proxy.set(Faults {
        reset_after: Some(4_000),
        ..Faults::default()
    });
    proxy.reset_all();
    let before = proxy.accepted();
    let sent = publish_many(&server, "reset", 100, 4, 150).await;
    let started = Instant::now();
    let got = listened(&mut lines, sent.len(), Duration::from_secs(60)).await;
    assert_eq!(got, sent, "every notification once, in order");
    let reconnects = proxy.accepted() - before;
    assert!(reconnects >= 5, "only {reconnects} connections were reset");
    println!(
        "resets mid-frame every 4,000 bytes: listen reconnected {reconnects} times and printed \
         all {} once, in order, in {:?}",
        sent.len(),
        started.elapsed()
    );
}

async fn a_30_s_blackhole_heals_and_listen_resumes(base: Config) {
    let (server, proxy) = server_behind_proxy(base).await;
    let (_listener, mut lines) = listen(&proxy.url(), "hole");
    listening(&server, "hole", &mut lines).await;
    let before = proxy.accepted();
    proxy.update(|faults| faults.blackhole = true);
    let cut = Instant::now();
    let mut sent = Vec::new();
    while cut.elapsed() < Duration::from_secs(30) {
        sent.extend(publish_many(&server, "hole", 5, 1, 50).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    proxy.update(|faults| faults.blackhole = false);
    let healed = Instant::now();
    let got = listened(&mut lines, sent.len(), Duration::from_secs(45)).await;
    assert_eq!(
        got, sent,
        "everything published in the blackhole, once, in order"
    );
    println!(
        "30 s blackhole: {} published meanwhile, all printed once, in order, {:?} after it \
         healed; listen opened {} connections meanwhile (it gives a silent link 2 heartbeats)",
        sent.len(),
        healed.elapsed(),
        proxy.accepted() - before
    );
}

async fn a_half_open_link_is_freed_by_the_server_and_listen_moves_on(base: Config) {
    let send_timeout = base.send_timeout;
    let (server, proxy) = server_behind_proxy(base).await;
    let (_listener, mut lines) = listen(&proxy.url(), "half");
    listening(&server, "half", &mut lines).await;
    // A subscriber that, unlike listen, never gives up on its connection.
    let _stuck = subscriber(&proxy.url(), "half").await;
    let streams_open = || async {
        support::metric(&server, "notify_hub_streams_open")
            .await
            .expect("the streams_open gauge")
    };
    assert_eq!(streams_open().await, 2.0);
    proxy.freeze_open();
    let (frozen, before) = (Instant::now(), proxy.accepted());
    // Enough to fill what the server's socket and the proxy's buffer hold, so that the
    // server's writes stop making progress (4 MiB of send buffer at most here).
    let sent = publish_many(&server, "half", 1_600, 16, 3_900).await;
    // Both frozen streams gone; listen's new connection may be open by then.
    let freed = loop {
        let new = (proxy.accepted() - before) as f64;
        if streams_open().await <= new {
            break frozen.elapsed();
        }
        assert!(
            frozen.elapsed() < send_timeout + Duration::from_secs(30),
            "the server still holds a half-open stream after {:?}",
            frozen.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let got = listened(&mut lines, sent.len(), Duration::from_secs(60)).await;
    assert_eq!(
        got, sent,
        "listen got everything once, in order, on a new connection"
    );
    println!(
        "half-open link: the server freed both frozen streams {freed:?} after the freeze \
         (send timeout {send_timeout:?}, {} MB sent into them), and listen, on a new \
         connection, printed all {} once, in order, {:?} after the freeze",
        sent.len() * 4_000 / 1_000_000,
        sent.len(),
        frozen.elapsed()
    );
}

//! Several real `server` processes sharing one real Redis: delivery across instances,
//! ordering with concurrent publishers on different instances, subscribers moving between
//! instances with `Last-Event-ID`, an instance killed with SIGKILL, and Redis itself
//! killed and restarted. Each test prints what was published, received, duplicated and
//! lost.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::Notification;
use e2e::redis::{shared_url, unique_prefix, RedisServer};
use e2e::ServerProcess;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use server::store::EventId;

/// `n` instances on one Redis, under one key prefix (one hub).
fn instances(redis: &str, n: usize) -> Vec<ServerProcess> {
    let prefix = unique_prefix();
    let args = ["--publish-rate", "0", "--heartbeat-secs", "1"];
    (0..n).map(|_| instance(redis, &prefix, &args)).collect()
}

/// One instance of the hub whose keys are under `prefix` in `redis`, with `extra` flags.
fn instance(redis: &str, prefix: &str, extra: &[&str]) -> ServerProcess {
    let unused_db = tempfile::tempdir().unwrap().keep().join("unused.db");
    let mut args = vec!["--redis", redis, "--redis-prefix", prefix];
    args.extend_from_slice(extra);
    let bin = Path::new(env!("CARGO_BIN_EXE_server"));
    ServerProcess::start(
        bin,
        "127.0.0.1:0",
        Path::new("/nonexistent"),
        &unused_db,
        &args,
    )
    .unwrap()
}

/// A publish through `url` that must be refused with `503`: its JSON reason.
async fn refused_publish(client: &reqwest::Client, url: &str, stream: &str) -> common::ErrorBody {
    let refused = client
        .post(format!("{url}/api/notifications"))
        .json(&serde_json::json!({ "stream": stream, "title": "refused" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    refused.json().await.unwrap()
}

/// Publishes through `url`; the stored notification, or `None` when it was not
/// acknowledged (refused, or the instance is gone).
async fn publish(
    client: &reqwest::Client,
    url: &str,
    stream: &str,
    title: &str,
) -> Option<Notification> {
    let response = client
        .post(format!("{url}/api/notifications"))
        .json(&serde_json::json!({ "stream": stream, "title": title }))
        .send()
        .await
        .ok()?;
    if response.status() != reqwest::StatusCode::CREATED {
        return None;
    }
    response.json().await.ok()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// What one subscriber saw.
#[derive(Debug, Default)]
struct Received {
    ids: Vec<String>,
    /// Connections it had to open again (on another instance) after one ended.
    moves: usize,
    resets: usize,
}

/// Reads `stream` after `after` from `urls[0]`; when a connection ends or fails, goes on
/// from the next URL with `Last-Event-ID` (as a browser behind a load balancer would),
/// until the notification titled `END`.
async fn subscriber(urls: Vec<String>, stream: String, after: String) -> Received {
    let client = reqwest::Client::new();
    let mut received = Received::default();
    let mut last = after;
    for url in urls.iter().cycle() {
        let response = client
            .get(format!("{url}/events?stream={stream}"))
            .header("Last-Event-ID", &last)
            .send()
            .await;
        if let Ok(response) = response.and_then(|r| r.error_for_status()) {
            let mut events = response.bytes_stream().eventsource();
            while let Some(Ok(event)) = events.next().await {
                match event.event.as_str() {
                    "message" => {
                        let notification: Notification = serde_json::from_str(&event.data).unwrap();
                        received.ids.push(notification.id.clone());
                        last = notification.id;
                        if notification.title == "END" {
                            return received;
                        }
                    }
                    common::events::RESET => received.resets += 1,
                    _ => {}
                }
            }
        }
        received.moves += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!("cycle never ends")
}

/// Checks every subscriber against what was acknowledged: each got every acknowledged
/// notification exactly once, in id order, and all got the same sequence. Prints the
/// figures and returns the total moves.
fn check(what: &str, acknowledged: &[String], refused: usize, all: &[Received]) -> usize {
    let acknowledged_set: HashSet<&String> = acknowledged.iter().collect();
    let (mut duplicated, mut lost, mut out_of_order, mut moves, mut resets) = (0, 0, 0, 0, 0);
    for received in all {
        let unique: HashSet<&String> = received.ids.iter().collect();
        duplicated += received.ids.len() - unique.len();
        lost += acknowledged_set.difference(&unique).count();
        let ids: Vec<EventId> = received.ids.iter().map(|id| id.parse().unwrap()).collect();
        out_of_order += ids.windows(2).filter(|w| w[0] >= w[1]).count();
        moves += received.moves;
        resets += received.resets;
    }
    let same_order = all.iter().all(|r| r.ids == all[0].ids);
    println!(
        "{what}: {} published and acknowledged, {refused} refused; {} subscribers received \
         {} each (the same sequence: {same_order}); duplicated {duplicated}, lost {lost}, \
         out of order {out_of_order}, resets {resets}, reconnections {moves}",
        acknowledged.len(),
        all.len(),
        all[0].ids.len(),
    );
    assert_eq!(
        (duplicated, lost, out_of_order, resets),
        (0, 0, 0, 0),
        "{what}"
    );
    assert!(same_order, "{what}: subscribers saw different orders");
    moves
}

/// Starts `n` subscribers after `after`, subscriber `i` on `urls[i % len]` first.
fn subscribers(
    urls: &[String],
    n: usize,
    stream: &str,
    after: &str,
) -> Vec<tokio::task::JoinHandle<Received>> {
    (0..n)
        .map(|i| {
            let mut order = urls.to_vec();
            order.rotate_left(i % urls.len());
            tokio::spawn(subscriber(order, stream.to_owned(), after.to_owned()))
        })
        .collect()
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<Received>>) -> Vec<Received> {
    let mut all = Vec::new();
    for task in tasks {
        let received = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("a subscriber never saw END")
            .unwrap();
        all.push(received);
    }
    all
}

/// A connection of the test's own to `redis`, to look into it or reconfigure it.
async fn redis_admin(redis: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The `section` of Redis's `INFO`.
async fn redis_info(redis: &str, section: &str) -> String {
    redis::cmd("INFO")
        .arg(section)
        .query_async(&mut redis_admin(redis).await)
        .await
        .unwrap()
}

/// A figure of Redis's `INFO clients` (`connected_clients`, `blocked_clients`: those in a
/// blocking read, `XREAD BLOCK`).
async fn redis_clients(redis: &str, figure: &str) -> u64 {
    redis_info(redis, "clients")
        .await
        .lines()
        .find_map(|line| line.strip_prefix(figure)?.strip_prefix(':'))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_notification_published_on_one_instance_reaches_a_subscriber_on_another() {
    // A Redis of its own, so that its blocked readers are this test's.
    let redis = RedisServer::start().unwrap();
    let servers = instances(&redis.url, 2);
    let (a, b) = (&servers[0], &servers[1]);
    let client = client();
    let start = publish(&client, &a.url, "cross", "START").await.unwrap();
    let on_b = tokio::spawn(subscriber(
        vec![b.url.clone()],
        "cross".into(),
        start.id.clone(),
    ));
    // Each instance has one reader of the change feed, whatever it follows.
    e2e::eventually("one reader each", Duration::from_secs(10), || async {
        Ok((redis_clients(&redis.url, "blocked_clients").await == 2).then_some(()))
    })
    .await
    .unwrap();
    let sent = publish(&client, &a.url, "cross", "hello from A")
        .await
        .unwrap();
    publish(&client, &a.url, "cross", "END").await.unwrap();
    let received = tokio::time::timeout(Duration::from_secs(10), on_b)
        .await
        .expect("B never delivered A's notification")
        .unwrap();
    assert_eq!(received.ids[0], sent.id);
    assert!(sent.id.contains('-'), "a Redis stream id: {}", sent.id);
    // B's history reads the same stream.
    let history: common::History = client
        .get(format!("{}/api/notifications?stream=cross", b.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let titles: Vec<&str> = history
        .notifications
        .iter()
        .map(|n| n.title.as_str())
        .collect();
    assert_eq!(titles, ["START", "hello from A", "END"]);
    for server in [a, b] {
        let health = client
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), reqwest::StatusCode::OK);
    }
}

#[tokio::test]
async fn ten_subscribers_on_three_instances_get_three_publishers_notifications_once_in_one_order() {
    const PER_PUBLISHER: usize = 100;
    let servers = instances(&shared_url(), 3);
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let client = client();
    let start = publish(&client, &urls[0], "fan", "START").await.unwrap();
    let readers = subscribers(&urls, 10, "fan", &start.id);
    let publishers: Vec<_> = urls
        .iter()
        .enumerate()
        .map(|(p, url)| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for n in 0..PER_PUBLISHER {
                    let stored = publish(&client, &url, "fan", &format!("p{p}-{n}")).await;
                    acknowledged.push(stored.expect("Redis is up: every publish succeeds").id);
                }
                acknowledged
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    for publisher in publishers {
        acknowledged.extend(publisher.await.unwrap());
    }
    publish(&client, &urls[1], "fan", "END").await.unwrap();
    let all = collect(readers).await;
    assert_eq!(all[0].ids.len(), 3 * PER_PUBLISHER + 1);
    check(
        "3 instances, 3 publishers, 10 subscribers",
        &acknowledged,
        0,
        &all,
    );
}

#[tokio::test]
async fn a_subscriber_moving_to_another_instance_with_its_last_event_id_loses_nothing() {
    let servers = instances(&shared_url(), 2);
    let (a, b) = (&servers[0], &servers[1]);
    let client = client();
    let start = publish(&client, &a.url, "move", "START").await.unwrap();
    // Read 10 on A, then hang up and go on from B while publishing goes on.
    let response = client
        .get(format!("{}/events?stream=move", a.url))
        .header("Last-Event-ID", &start.id)
        .send()
        .await
        .unwrap();
    let mut acknowledged = Vec::new();
    for n in 0..10 {
        acknowledged.push(
            publish(&client, &a.url, "move", &format!("n{n}"))
                .await
                .unwrap()
                .id,
        );
    }
    let mut on_a = Vec::new();
    let mut events = response.bytes_stream().eventsource();
    while on_a.len() < 10 {
        let event = events.next().await.unwrap().unwrap();
        if event.event == "message" {
            on_a.push(event.id);
        }
    }
    drop(events);
    for n in 10..20 {
        acknowledged.push(
            publish(&client, &b.url, "move", &format!("n{n}"))
                .await
                .unwrap()
                .id,
        );
    }
    let on_b = tokio::spawn(subscriber(
        vec![b.url.clone()],
        "move".into(),
        on_a[9].clone(),
    ));
    for n in 20..30 {
        acknowledged.push(
            publish(&client, &a.url, "move", &format!("n{n}"))
                .await
                .unwrap()
                .id,
        );
    }
    publish(&client, &b.url, "move", "END").await.unwrap();
    let mut received = tokio::time::timeout(Duration::from_secs(10), on_b)
        .await
        .unwrap()
        .unwrap();
    received.ids = on_a.into_iter().chain(received.ids).collect();
    check(
        "a subscriber moved from A to B",
        &acknowledged,
        0,
        &[received],
    );
}

#[tokio::test]
async fn killing_an_instance_while_publishing_loses_nothing_acknowledged() {
    const PUBLISHES: usize = 150;
    let servers = instances(&shared_url(), 3);
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let mut servers: Vec<Option<ServerProcess>> = servers.into_iter().map(Some).collect();
    let client = client();
    let start = publish(&client, &urls[1], "k9x", "START").await.unwrap();
    let readers = subscribers(&urls, 9, "k9x", &start.id);
    // Three publishers, each starting on its own instance and moving on when it fails.
    let publishers: Vec<_> = (0..3)
        .map(|p| {
            let (client, urls) = (client.clone(), urls.clone());
            tokio::spawn(async move {
                let (mut acknowledged, mut refused, mut at) = (Vec::new(), 0, p);
                for n in 0..PUBLISHES {
                    match publish(&client, &urls[at % 3], "k9x", &format!("p{p}-{n}")).await {
                        Some(stored) => acknowledged.push(stored.id),
                        None => {
                            refused += 1;
                            at += 1;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (acknowledged, refused)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    drop(servers[0].take()); // SIGKILL
    println!("instance A killed with SIGKILL while publishing");
    let (mut acknowledged, mut refused) = (Vec::new(), 0);
    for publisher in publishers {
        let (ids, failed) = publisher.await.unwrap();
        acknowledged.extend(ids);
        refused += failed;
    }
    publish(&client, &urls[2], "k9x", "END").await.unwrap();
    let all = collect(readers).await;
    let moves = check("kill -9 of 1 of 3 instances", &acknowledged, refused, &all);
    assert!(moves >= 3, "the subscribers of A moved to another instance");
}

/// Redis is killed (SIGKILL) and restarted while a publisher publishes through two
/// instances: publishes, new subscribers and reads in between get 503, `/healthz` says
/// degraded, subscribers keep their connections, and afterwards every acknowledged
/// notification arrives once.
#[tokio::test]
async fn a_redis_restart_mid_run_loses_and_doubles_nothing_acknowledged() {
    let mut redis = RedisServer::start_durable().unwrap();
    let servers = instances(&redis.url, 2);
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let client = client();
    let start = publish(&client, &urls[0], "rr", "START").await.unwrap();
    let readers = subscribers(&urls, 6, "rr", &start.id);
    let publishing = {
        let (client, urls) = (client.clone(), urls.clone());
        tokio::spawn(async move {
            let (mut acknowledged, mut refused) = (Vec::new(), 0);
            let mut slowest_refusal = Duration::ZERO;
            let mut every = tokio::time::interval(Duration::from_millis(10));
            for n in 0..600 {
                every.tick().await;
                let started = std::time::Instant::now();
                match publish(&client, &urls[n % 2], "rr", &format!("n{n}")).await {
                    Some(stored) => acknowledged.push(stored.id),
                    None => {
                        refused += 1;
                        slowest_refusal = slowest_refusal.max(started.elapsed());
                    }
                }
            }
            println!("publishes refused while Redis was down: {refused}, the slowest answered in {slowest_refusal:?}");
            (acknowledged, refused)
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.kill();
    println!("Redis killed with SIGKILL");
    let degraded = e2e::eventually("a degraded /healthz", Duration::from_secs(10), || {
        let client = client.clone();
        let url = format!("{}/healthz", urls[1]);
        async move {
            let response = client.get(url).send().await?;
            Ok(
                (response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE)
                    .then_some(response.json::<common::Health>().await?),
            )
        }
    })
    .await
    .unwrap();
    println!("/healthz while Redis is down: {degraded:?}");
    assert!(degraded.store.contains("Redis"), "{}", degraded.store);
    let reason = refused_publish(&client, &urls[0], "rr").await;
    println!("a publish while Redis is down: 503 {reason:?}");
    assert!(reason.error.contains("Redis"), "{}", reason.error);
    // A new subscriber (its start is read from the store) and a history read are
    // refused the same way: 503, a reason, and when to try again.
    for path in [
        "/events?stream=rr&stream=other",
        "/api/notifications?stream=rr",
    ] {
        let refused = client
            .get(format!("{}{path}", urls[1]))
            .send()
            .await
            .unwrap();
        assert_eq!(
            refused.status(),
            reqwest::StatusCode::SERVICE_UNAVAILABLE,
            "{path}"
        );
        assert_eq!(refused.headers()["retry-after"], "1", "{path}");
        let reason: common::ErrorBody = refused.json().await.unwrap();
        println!("GET {path} while Redis is down: 503 {reason:?}");
        assert!(
            reason.error.contains("could not be read"),
            "{}",
            reason.error
        );
    }
    // A new subscriber of a stream the instance follows already starts where its
    // follower stands, which needs no read: it is let in, and gets what follows.
    let mut joined_while_down = greeted(&reqwest::Client::new(), &urls[1], "rr").await;
    let metrics = client
        .get(format!("{}/metrics", urls[0]))
        .send()
        .await
        .unwrap();
    assert!(metrics
        .text()
        .await
        .unwrap()
        .contains("notify_hub_store_up 0"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.restart().unwrap();
    println!("Redis restarted");
    let (acknowledged, refused) = publishing.await.unwrap();
    e2e::eventually("a healthy /healthz", Duration::from_secs(10), || {
        let client = client.clone();
        let url = format!("{}/healthz", urls[1]);
        async move {
            Ok((client.get(url).send().await?.status() == reqwest::StatusCode::OK).then_some(()))
        }
    })
    .await
    .unwrap();
    publish(&client, &urls[0], "rr", "END").await.unwrap();
    let all = collect(readers).await;
    let (mut titles, mut last) = (Vec::new(), String::new());
    while last != "END" {
        let (seen, _) = messages(
            &mut joined_while_down,
            1,
            "END, for the one that joined while Redis was down",
        )
        .await;
        last = seen[0].trim_start_matches("rr ").to_owned();
        titles.push(last.clone());
    }
    println!(
        "the subscriber that joined while Redis was down got {} notifications, up to END",
        titles.len()
    );
    let moves = check("Redis killed and restarted", &acknowledged, refused, &all);
    assert!(refused > 0, "publishes were refused while Redis was down");
    assert_eq!(moves, 0, "subscribers kept their connections");
    let log = servers[0].log();
    assert!(log.contains("the store failed"), "the outage is logged");
    assert!(log.contains("the store works again"), "so is the recovery");
}

/// The next counter value on `events`.
async fn next_count(
    events: &mut (impl futures::Stream<Item = Result<eventsource_stream::Event, impl std::fmt::Debug>>
              + Unpin),
) -> u64 {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("the counter stopped for 10 s")
            .expect("the stream ended")
            .unwrap();
        if event.event == "message" {
            let notification: Notification = serde_json::from_str(&event.data).unwrap();
            return notification.title.parse().unwrap();
        }
    }
}

/// `--demo` on every instance: one counts at a time (a lease in Redis), and when it is
/// killed another takes over from the stored count, so the numbers stay consecutive.
#[tokio::test]
async fn with_demo_on_every_instance_the_counter_counts_once_and_survives_its_instance() {
    let redis = shared_url();
    let prefix = unique_prefix();
    let start = |_| instance(&redis, &prefix, &["--demo"]);
    let first = start(0);
    // Counting before the others start: the first holds the lease.
    let response = reqwest::get(format!("{}/events?stream=counter", first.url))
        .await
        .unwrap();
    next_count(&mut response.bytes_stream().eventsource()).await;
    let others: Vec<ServerProcess> = (1..3).map(start).collect();
    let response = reqwest::get(format!("{}/events?stream=counter", others[0].url))
        .await
        .unwrap();
    let mut counter = response.bytes_stream().eventsource();
    let mut counts = Vec::new();
    for _ in 0..15 {
        counts.push(next_count(&mut counter).await);
    }
    drop(first); // SIGKILL
    for _ in 0..15 {
        counts.push(next_count(&mut counter).await);
    }
    println!(
        "counter with 3 instances, the counting one killed after 15: {:?}",
        counts
    );
    assert!(
        counts.windows(2).all(|w| w[1] == w[0] + 1),
        "one count at a time, going on after a takeover: {counts:?}"
    );
}

/// Another instance appends a burst larger than the stream's cap in one batch: the burst's
/// first entries are trimmed before this instance's reader can see them. Its subscriber
/// must hear of the loss (a reset), not get the rest as if nothing were missing.
#[tokio::test]
async fn entries_trimmed_before_the_reader_sees_them_give_live_subscribers_a_reset() {
    use server::hub::{Delivery, Hub};
    use server::store::redis_streams::RedisStore;
    use server::store::{Draft, Retention, Store};
    let (redis, prefix) = (shared_url(), unique_prefix());
    let store = |cap| RedisStore::connect(&redis, &prefix, Retention::new(Some(cap), None));
    let here = Arc::new(store(3).await.unwrap());
    let other_instance = store(3).await.unwrap();
    let hub = Hub::new(here, Duration::from_secs(3600), 64);
    let draft = |title: &str| Draft {
        stream: "burst".into(),
        title: title.into(),
        body: String::new(),
        level: common::Level::Info,
    };
    let before = other_instance.append(vec![draft("before")]).await.unwrap();
    let mut subscription = hub.subscribe("burst", Some(before[0].id)).await.unwrap();
    assert_eq!(subscription.next().await, Some(Delivery::Heartbeat));
    let next = tokio::spawn(async move { subscription.next().await });
    tokio::time::sleep(Duration::from_millis(300)).await; // the subscriber is live
    let burst: Vec<Draft> = (0..10).map(|n| draft(&format!("n{n}"))).collect();
    let stored = other_instance.append(burst).await.unwrap();
    let delivered = tokio::time::timeout(Duration::from_secs(10), next)
        .await
        .expect("nothing delivered")
        .unwrap();
    println!("after a burst of 10 into a stream that keeps 3: {delivered:?}");
    assert_eq!(
        delivered,
        Some(Delivery::Reset(stored[9].id)),
        "the 7 trimmed entries are reported, not skipped"
    );
}

/// Redis answers but refuses writes (out of memory here; a read-only replica or a failed
/// save behave alike): publishes get `503` with the reason and `/healthz` stays degraded,
/// though pings still succeed, until a write goes through again.
#[tokio::test]
async fn a_redis_that_refuses_writes_keeps_health_degraded_until_writes_work() {
    let redis = RedisServer::start().unwrap();
    let servers = instances(&redis.url, 1);
    let url = &servers[0].url;
    let client = client();
    publish(&client, url, "full", "fits").await.unwrap();
    let mut admin = redis_admin(&redis.url).await;
    let set_maxmemory = |bytes: u64| {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(bytes)
            .clone()
    };
    let () = set_maxmemory(1).query_async(&mut admin).await.unwrap();
    let reason = refused_publish(&client, url, "full").await;
    println!("a publish to a full Redis: {reason:?}");
    assert!(reason.error.contains("OOM"), "{}", reason.error);
    // Across several pings, health stays degraded.
    for _ in 0..5 {
        let health = client.get(format!("{url}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let () = set_maxmemory(0).query_async(&mut admin).await.unwrap();
    publish(&client, url, "full", "fits again").await.unwrap();
    let health = client.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
}

#[tokio::test]
async fn a_pattern_on_one_instance_follows_a_stream_created_on_another_and_moves_with_its_id() {
    let servers = instances(&shared_url(), 2);
    let (a, b) = (&servers[0], &servers[1]);
    let client = client();
    let open = |url: &str, last: Option<String>| {
        let mut request =
            reqwest::Client::new().get(format!("{url}/events?stream=team&stream=ops.*"));
        if let Some(last) = last {
            request = request.header("Last-Event-ID", last);
        }
        request.send()
    };
    let response = open(&a.url, None).await.unwrap();
    let mut events = response.bytes_stream().eventsource();
    // Created on B after the subscriber connected to A: A learns of it from Redis.
    publish(&client, &b.url, "ops.db", "db1").await.unwrap();
    publish(&client, &b.url, "team", "t1").await.unwrap();
    let (mut seen, last) = messages(&mut events, 2, "A delivered B's new stream").await;
    seen.sort();
    assert_eq!(seen, ["ops.db db1", "team t1"]);
    drop(events);
    // Away, then back on B with the last id: the rest of every stream, once.
    publish(&client, &a.url, "ops.db", "db2").await.unwrap();
    publish(&client, &a.url, "ops.web", "web1").await.unwrap();
    publish(&client, &a.url, "team", "t2").await.unwrap();
    let response = open(&b.url, last).await.unwrap();
    let mut events = response.bytes_stream().eventsource();
    let (mut resumed, _) = messages(&mut events, 3, "B resumed every stream").await;
    resumed.sort();
    assert_eq!(resumed, ["ops.db db2", "ops.web web1", "team t2"]);
    publish(&client, &a.url, "team", "t3").await.unwrap();
    let (next, _) = messages(&mut events, 1, "the next one").await;
    assert_eq!(next, ["team t3"], "nothing twice");
}

/// The next `n` notifications of `events` as `stream title`, and the SSE id of the last,
/// failing with `what` when they do not come within 10 s each.
async fn messages(
    events: &mut (impl futures::Stream<Item = Result<eventsource_stream::Event, impl std::fmt::Debug>>
              + Unpin),
    n: usize,
    what: &str,
) -> (Vec<String>, Option<String>) {
    let (mut seen, mut last) = (Vec::new(), None);
    while seen.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap_or_else(|_| panic!("{what} within 10 s; saw {seen:?}"))
            .unwrap()
            .unwrap();
        if event.event == "message" {
            let n: Notification = serde_json::from_str(&event.data).unwrap();
            seen.push(format!("{} {}", n.stream, n.title));
            last = Some(event.id);
        }
    }
    (seen, last)
}

/// Calls Redis has run, by command, apart from the ones that do not touch a stream's
/// entries: the followers' blocking reads, the health pings and the test's own `INFO`.
async fn reads_and_writes(redis: &str) -> Vec<(String, u64)> {
    redis_info(redis, "commandstats")
        .await
        .lines()
        .filter_map(|line| {
            let (command, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((command.to_owned(), calls))
        })
        .filter(|(command, _)| !["xread", "ping", "info"].contains(&command.as_str()))
        .collect()
}

/// A subscriber of `stream` on `url` once its stream is open (its first heartbeat).
async fn greeted(
    client: &reqwest::Client,
    url: &str,
    stream: &str,
) -> impl futures::Stream<Item = Result<eventsource_stream::Event, impl std::fmt::Debug>> + Unpin {
    let response = client
        .get(format!("{url}/events?stream={stream}"))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let mut events = response.bytes_stream().eventsource();
    let first = events.next().await.unwrap().unwrap();
    assert_eq!(first.event, common::events::HEARTBEAT);
    events
}

#[tokio::test]
async fn subscribers_joining_a_followed_stream_cost_redis_no_read_and_miss_nothing() {
    // A Redis of its own, so that the calls it counts are this test's; instances at
    // their defaults.
    let redis = RedisServer::start().unwrap();
    let prefix = unique_prefix();
    let servers: Vec<_> = (0..2).map(|_| instance(&redis.url, &prefix, &[])).collect();
    let (a, b) = (&servers[0], &servers[1]);
    let client = reqwest::Client::new();
    publish(&client, &a.url, "crowd", "before").await.unwrap();
    // The first subscriber on B reads the stream's head, and B starts following it.
    let mut first = greeted(&client, &b.url, "crowd").await;
    let before = reads_and_writes(&redis.url).await;
    let mut crowd = Vec::new();
    for _ in 0..50 {
        crowd.push(greeted(&client, &b.url, "crowd").await);
    }
    let after = reads_and_writes(&redis.url).await;
    println!("Redis calls before the crowd joined: {before:?}; after: {after:?}");
    assert_eq!(before, after, "the crowd's joins read Redis");
    let sent = publish(&client, &a.url, "crowd", "after").await.unwrap();
    for events in std::iter::once(&mut first).chain(&mut crowd) {
        let (seen, last) = messages(events, 1, "the notification published after").await;
        assert_eq!(
            (seen, last),
            (vec!["crowd after".to_owned()], Some(sent.id.clone()))
        );
    }
    println!("51 subscribers got the notification published after they joined");
}

#[tokio::test]
async fn an_instance_following_a_thousand_streams_holds_two_redis_connections() {
    const STREAMS: usize = 1_000;
    let redis = RedisServer::start().unwrap();
    // At the default settings.
    let server = instance(&redis.url, &unique_prefix(), &[]);
    let client = reqwest::Client::new();
    let mut subscribers = Vec::new();
    for user in 0..STREAMS {
        let response = client
            .get(format!("{}/events?stream=user.{user}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        let mut events = response.bytes_stream().eventsource();
        events.next().await.unwrap().unwrap();
        subscribers.push(events);
    }
    // The instance's connection for commands and its one reader of the change feed; the
    // test's own connection for `INFO` is the third.
    let connected = redis_clients(&redis.url, "connected_clients").await;
    let blocked = redis_clients(&redis.url, "blocked_clients").await;
    println!("{STREAMS} streams followed: {connected} Redis clients, {blocked} blocked");
    assert!(connected <= 3, "{connected} Redis connections");
    assert!(blocked <= 1, "{blocked} blocked readers");
    // Targeted publishes reach their one subscriber each, and nobody else.
    let targets = [0, 1, 499, 998, 999];
    for user in targets {
        let sent = publish(&client, &server.url, &format!("user.{user}"), "for you")
            .await
            .unwrap();
        let event = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let event = subscribers[user].next().await.unwrap().unwrap();
                if event.event == "message" {
                    return event;
                }
            }
        })
        .await
        .expect("a targeted publish never arrived");
        assert_eq!(event.id, sent.id);
    }
    for (user, subscriber) in subscribers.iter_mut().enumerate().take(20) {
        if targets.contains(&user) {
            continue;
        }
        let nothing = tokio::time::timeout(Duration::from_millis(50), async {
            while let Some(Ok(event)) = subscriber.next().await {
                if event.event == "message" {
                    return event;
                }
            }
            std::future::pending().await
        })
        .await;
        assert!(nothing.is_err(), "user.{user} got another's notification");
    }
}

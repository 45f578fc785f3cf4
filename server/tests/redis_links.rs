//! Faults on the link between an instance and Redis, made by `e2e::fault_proxy`: two
//! instances share one Redis, and one of them reaches it through the proxy. While that
//! link is cut, half-open or slow, the other instance keeps publishing; the cut-off one
//! must refuse its own publishes within the store's deadline (never hang), say so in its
//! health and metrics, and give its subscribers everything, once and in order, when the
//! link heals. At the default settings.

mod support;

use std::time::{Duration, Instant};

use e2e::fault_proxy::{FaultProxy, Faults};
use futures::StreamExt;
use server::config::Config;
use support::{events, redis_config, TestServer};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Where an id (`1700000000000-3`) is in its stream's order.
fn order(id: &str) -> (u64, u64) {
    let (time, seq) = id.split_once('-').unwrap();
    (time.parse().unwrap(), seq.parse().unwrap())
}

/// Two instances on one Redis under one prefix: `near` reaches it directly, `far` through
/// the proxy.
struct Pair {
    near: TestServer,
    far: TestServer,
    proxy: FaultProxy,
}

impl Pair {
    async fn start() -> Self {
        let near_config = redis_config();
        let redis = near_config.redis.clone().unwrap();
        let target = redis
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let proxy = FaultProxy::start(target).await.unwrap();
        let far_config = Config {
            redis: Some(format!("redis://{}", proxy.addr)),
            redis_prefix: near_config.redis_prefix.clone(),
            db: support::temp_db(),
            ..near_config.clone()
        };
        let near = TestServer::start(near_config).await;
        let far = TestServer::start(far_config).await;
        Self { near, far, proxy }
    }
}

/// One publish to `stream` on `server`: the stored id, or the refusal's status, and how
/// long the answer took.
async fn publish(
    server: &TestServer,
    stream: &str,
    title: &str,
) -> (Result<String, u16>, Duration) {
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(server.at("/api/notifications"))
        .json(&serde_json::json!({"stream": stream, "title": title}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("the publish hung for 30 s or failed");
    let status = response.status();
    let outcome = if status == reqwest::StatusCode::CREATED {
        Ok(response.json::<common::Notification>().await.unwrap().id)
    } else {
        Err(status.as_u16())
    };
    (outcome, started.elapsed())
}

/// Publishes to `stream` on `server` every 100 ms until `stop` says so; returns the ids
/// stored, in stream order.
fn keep_publishing(
    server: String,
    stream: &'static str,
    stop: watch::Receiver<bool>,
) -> JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut ids = Vec::new();
        let mut n = 0;
        while !*stop.borrow() {
            n += 1;
            let response = client
                .post(format!("{server}/api/notifications"))
                .json(&serde_json::json!({"stream": stream, "title": format!("n{n}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), reqwest::StatusCode::CREATED);
            ids.push(response.json::<common::Notification>().await.unwrap().id);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ids.sort_unstable_by_key(|id| order(id));
        ids
    })
}

/// A subscriber of `stream` on `server`, from now: the ids and titles it gets, through a
/// channel.
async fn subscriber(
    server: &TestServer,
    stream: &str,
) -> mpsc::UnboundedReceiver<(String, String)> {
    let response = reqwest::get(server.at(&format!("/events?stream={stream}")))
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let mut events = events(response);
    let greeting = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("no greeting")
        .unwrap();
    assert_eq!(greeting.event, common::events::HEARTBEAT);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            assert_ne!(event.event, common::events::RESET, "nothing may be lost");
            if event.event == "message" {
                let title = serde_json::from_str::<common::Notification>(&event.data)
                    .unwrap()
                    .title;
                if tx.send((event.id, title)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// What `received` holds once `sent` (ids in stream order) has all come, failing after
/// `limit`: the ids, and the titles of any others that came between them.
async fn receive(
    received: &mut mpsc::UnboundedReceiver<(String, String)>,
    sent: &[String],
    limit: Duration,
) -> (Vec<String>, Vec<String>) {
    let deadline = tokio::time::Instant::now() + limit;
    let (mut ids, mut others) = (Vec::with_capacity(sent.len()), Vec::new());
    while ids.len() < sent.len() {
        match tokio::time::timeout_at(deadline, received.recv()).await {
            Ok(Some((id, title))) => {
                if sent.contains(&id) {
                    ids.push(id);
                } else {
                    others.push(title);
                }
            }
            _ => panic!("got {} of {} within {limit:?}", ids.len(), sent.len()),
        }
    }
    (ids, others)
}

/// The instance's `/healthz` status and its `notify_hub_store_up` gauge.
async fn health(server: &TestServer) -> (u16, f64) {
    let status = reqwest::get(server.at("/healthz"))
        .await
        .unwrap()
        .status()
        .as_u16();
    let up = support::metric(server, "notify_hub_store_up")
        .await
        .expect("the store_up gauge");
    (status, up)
}

/// Waits until `server` reports its store healthy again; how long that took.
async fn recovers(server: &TestServer, limit: Duration) -> Duration {
    let started = Instant::now();
    while health(server).await != (200, 1.0) {
        assert!(started.elapsed() < limit, "not healthy within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

/// The fault on `far`'s link to Redis, held for `hold`, while `near` publishes: `far`'s
/// publishes meanwhile are refused fast or stored, its health says so, and once the fault
/// is lifted its subscriber has everything `near` stored, once, in order. Prints what it
/// saw under `name`.
async fn survives(
    name: &str,
    apply: impl Fn(&FaultProxy),
    lift: impl Fn(&FaultProxy),
    hold: Duration,
) -> Seen {
    let pair = Pair::start().await;
    let stream = "linked";
    let mut far_subscriber = subscriber(&pair.far, stream).await;
    let mut near_subscriber = subscriber(&pair.near, stream).await;
    let (stop, stopped) = watch::channel(false);
    let publisher = keep_publishing(pair.near.url.clone(), stream, stopped);
    tokio::time::sleep(Duration::from_secs(1)).await;
    apply(&pair.proxy);
    let faulted = Instant::now();
    let (mut refused, mut stored, mut slowest) = (Vec::new(), Vec::new(), Duration::ZERO);
    let mut unhealthy_seen = false;
    while faulted.elapsed() < hold {
        let title = format!("far{}", refused.len() + stored.len());
        let (outcome, took) = publish(&pair.far, stream, &title).await;
        slowest = slowest.max(took);
        match outcome {
            Ok(id) => stored.push(id),
            Err(status) => {
                assert_eq!(status, 503, "a refusal is a 503");
                refused.push(title);
            }
        }
        let (status, up) = health(&pair.far).await;
        if status == 503 && up == 0.0 {
            unhealthy_seen = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Within the store's deadline (3 s), and the answer's way back.
    assert!(
        slowest < Duration::from_secs(5),
        "a publish took {slowest:?}"
    );
    lift(&pair.proxy);
    let healed = recovers(&pair.far, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.send(true).unwrap();
    let mut sent = publisher.await.unwrap();
    sent.extend(stored.iter().cloned());
    sent.sort_unstable_by_key(|id| order(id));
    let started = Instant::now();
    let (far_got, far_others) = receive(&mut far_subscriber, &sent, Duration::from_secs(60)).await;
    let caught_up = started.elapsed();
    let (near_got, near_others) =
        receive(&mut near_subscriber, &sent, Duration::from_secs(10)).await;
    assert_eq!(
        far_got, sent,
        "the far instance's subscriber: all, once, in order"
    );
    assert_eq!(
        near_got, sent,
        "the near instance's subscriber: all, once, in order"
    );
    // A publish answered 503 after Redis's deadline may have been stored all the same (its
    // answer was lost, not its write): it may come, once, and nothing else may.
    for others in [&far_others, &near_others] {
        let mut unique = others.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), others.len(), "a refused publish came twice");
        assert!(
            others.iter().all(|title| refused.contains(title)),
            "only refused publishes may come besides the stored ones: {others:?}"
        );
    }
    println!(
        "{name} for {hold:?}: the far instance refused {} of its publishes with 503 \
         ({} of them reached Redis all the same) and stored {} (slowest answer \
         {slowest:?}; unhealthy in /healthz and metrics: {unhealthy_seen}), was healthy \
         {healed:?} after the fault was lifted, and its subscriber had all {} \
         notifications, once and in order, {caught_up:?} later",
        refused.len(),
        far_others.len(),
        stored.len(),
        sent.len()
    );
    Seen {
        refused: refused.len(),
        stored: stored.len(),
        unhealthy: unhealthy_seen,
    }
}

/// What the far instance did while the fault was held.
struct Seen {
    /// Its publishes refused (503), and stored.
    refused: usize,
    stored: usize,
    /// Whether `/healthz` and `notify_hub_store_up` said the store was down.
    unhealthy: bool,
}

#[tokio::test]
async fn an_instance_cut_off_from_redis_for_30_s_refuses_fast_and_catches_up() {
    let seen = survives(
        "cut off",
        |proxy| proxy.update(|faults| faults.blackhole = true),
        |proxy| proxy.update(|faults| faults.blackhole = false),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        seen.refused > 0,
        "publishes on the cut-off instance were refused"
    );
    assert!(seen.unhealthy, "health and metrics said the store was down");
}

#[tokio::test]
async fn a_half_open_redis_connection_is_replaced() {
    let seen = survives(
        "half-open",
        FaultProxy::freeze_open,
        |_| {},
        Duration::from_secs(20),
    )
    .await;
    assert!(
        seen.stored > 0,
        "the instance went back to storing on a new connection while the old one hung"
    );
}

#[tokio::test]
async fn a_slow_redis_delays_but_loses_nothing() {
    let seen = survives(
        "200 ms per reply",
        |proxy| {
            proxy.set(Faults {
                latency: Duration::from_millis(100),
                ..Faults::default()
            })
        },
        |proxy| proxy.set(Faults::default()),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(seen.refused, 0, "a slow Redis refuses nothing");
}

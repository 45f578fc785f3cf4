//! The workloads of the benchmark (see BENCHMARKS.md): each starts its target fresh,
//! drives it from this process over loopback and returns its figures.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::load::{self, LatencyFrom, SendTimes, Stats, Subscribe, Transport};
use crate::target::{self, Kind, Programs, Target};
use crate::worker::{Share, Worker};

/// How long connecting may take before the run goes on with what connected.
const CONNECT_LIMIT: Duration = Duration::from_secs(60);
/// Quiet time after connecting, before the measured window.
const SETTLE: Duration = Duration::from_secs(1);

/// The figures of one fan-out run (workloads A, B and E).
#[derive(Clone, Debug)]
pub struct FanOut {
    pub kind: Kind,
    pub n: usize,
    pub connected: u64,
    pub failed: u64,
    pub events: u64,
    pub expected: u64,
    pub window: Duration,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub rss_before: u64,
    pub rss_after: u64,
    pub cpu_s: f64,
}

impl FanOut {
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.window.as_secs_f64()
    }

    pub fn delivery(&self) -> f64 {
        if self.expected == 0 {
            return 1.0;
        }
        self.events as f64 / self.expected as f64
    }

    /// Server memory added per connection, in bytes.
    pub fn rss_per_connection(&self) -> f64 {
        self.rss_after.saturating_sub(self.rss_before) as f64 / self.connected.max(1) as f64
    }

    fn measure(kind: Kind, n: usize, stats: &Stats, window: Duration) -> Self {
        Self {
            kind,
            n,
            connected: stats.connected.load(Ordering::Relaxed),
            failed: stats.failed.load(Ordering::Relaxed),
            events: stats.events.load(Ordering::Relaxed),
            expected: 0,
            window,
            p50_ms: stats.latency_ms(50.0),
            p99_ms: stats.latency_ms(99.0),
            max_ms: stats.latency_max_ms(),
            rss_before: 0,
            rss_after: 0,
            cpu_s: 0.0,
        }
    }
}

fn addr(target: &Target) -> anyhow::Result<SocketAddr> {
    let url = target.url.trim_start_matches("http://");
    Ok(url.trim_start_matches("https://").parse()?)
}

/// A freshly started target with `n` subscribers connected and settled.
struct Loaded {
    target: Target,
    /// The target's memory before the subscribers came.
    rss_before: u64,
    /// How long it took them all to connect.
    connect: Duration,
    stats: Arc<Stats>,
    connections: load::Connections,
}

impl Loaded {
    async fn start(
        kind: Kind,
        programs: &Programs,
        n: usize,
        subscribe: Subscribe,
        latency: LatencyFrom,
    ) -> anyhow::Result<Self> {
        let target = Target::start(kind, programs, &[])?;
        Self::load(target, &Transport::Plain, n, subscribe, latency).await
    }

    /// `n` subscribers on `target`, over `transport`.
    async fn load(
        target: Target,
        transport: &Transport,
        n: usize,
        subscribe: Subscribe,
        latency: LatencyFrom,
    ) -> anyhow::Result<Self> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss_before = target.rss();
        let stats = Stats::new();
        let started = Instant::now();
        let connections = load::open_over(
            addr(&target)?,
            transport,
            n,
            subscribe,
            latency,
            stats.clone(),
            CONNECT_LIMIT,
        )
        .await;
        let connect = started.elapsed();
        tokio::time::sleep(SETTLE).await;
        Ok(Self {
            target,
            rss_before,
            connect,
            stats,
            connections,
        })
    }

    /// The figures so far, over a window of `window`, with `cpu_s` of server CPU used;
    /// closes the connections.
    fn finish(self, n: usize, window: Duration, cpu_s: f64, expected: u64) -> FanOut {
        let mut run = FanOut::measure(self.target.kind, n, &self.stats, window);
        run.cpu_s = cpu_s;
        run.rss_before = self.rss_before;
        run.rss_after = self.target.rss();
        run.expected = expected;
        drop(self.connections);
        run
    }
}

/// A: `n` subscribers of the clock at `interval_ms`, measured for `window`.
pub async fn clock_fan_out(
    kind: Kind,
    programs: &Programs,
    n: usize,
    interval_ms: u64,
    window: Duration,
) -> anyhow::Result<FanOut> {
    let subscribe = Subscribe::to(format!("/sse/time?interval_ms={interval_ms}"));
    let run = Loaded::start(kind, programs, n, subscribe, LatencyFrom::Timestamp).await?;
    let cpu = run.target.cpu_seconds();
    run.stats.count(true);
    tokio::time::sleep(window).await;
    run.stats.count(false);
    let cpu_s = run.target.cpu_seconds() - cpu;
    let expected =
        run.stats.connected.load(Ordering::Relaxed) * window.as_millis() as u64 / interval_ms;
    Ok(run.finish(n, window, cpu_s, expected))
}

/// B: `n` subscribers of one stream while a publisher sends `rate` notifications a
/// second for `window`; latency from each publish's send time to its arrival.
pub async fn notification_fan_out(
    kind: Kind,
    programs: &Programs,
    n: usize,
    rate: u32,
    window: Duration,
) -> anyhow::Result<FanOut> {
    fan_out_over(kind, programs, n, rate, window, &Selection::one()).await
}

/// Which streams the subscribers of a notification fan-out follow, and where the
/// publishes go (in turn): every subscriber follows every stream published to.
pub struct Selection {
    /// The query's `stream=` values.
    pub selectors: Vec<String>,
    /// The streams published to, in turn.
    pub streams: Vec<String>,
}

impl Selection {
    /// One stream, `bench` (workload B).
    pub fn one() -> Self {
        Self {
            selectors: vec!["bench".into()],
            streams: vec!["bench".into()],
        }
    }

    /// Ten streams, nine by name and one through a pattern (workload G).
    pub fn ten() -> Self {
        let named: Vec<String> = (1..=9).map(|n| format!("g.s{n}")).collect();
        let mut selectors = named.clone();
        selectors.push("g.p*".into());
        let mut streams = named;
        streams.push("g.p.x".into());
        Self { selectors, streams }
    }

    fn path(&self) -> String {
        let query: Vec<String> = (self.selectors.iter())
            .map(|s| format!("stream={s}"))
            .collect();
        format!("/events?{}", query.join("&"))
    }
}

/// How workload H's subscribers reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    Http,
    Https1,
    H2,
}

impl Wire {
    pub fn name(self) -> &'static str {
        match self {
            Wire::Http => "HTTP/1.1",
            Wire::Https1 => "HTTPS, HTTP/1.1",
            Wire::H2 => "HTTPS, HTTP/2 (100 streams a connection)",
        }
    }
}

/// H: `n` subscribers of one stream reaching our server over `wire`, while `rate`
/// publishes a second go to it for `window`; also how long connecting them all took.
pub async fn fan_out_over_wire(
    programs: &Programs,
    wire: Wire,
    n: usize,
    rate: u32,
    window: Duration,
) -> anyhow::Result<(FanOut, Duration)> {
    let dir = tempfile::tempdir()?;
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, made.cert.pem())?;
    std::fs::write(&key, made.key_pair.serialize_pem())?;
    let pem = made.cert.pem();
    let (args, transport, client): (Vec<&str>, Transport, reqwest::Client) = match wire {
        Wire::Http => (Vec::new(), Transport::Plain, reqwest::Client::new()),
        Wire::Https1 | Wire::H2 => {
            let args = vec![
                "--tls-cert",
                cert.to_str().unwrap_or_default(),
                "--tls-key",
                key.to_str().unwrap_or_default(),
            ];
            let transport = if wire == Wire::H2 {
                Transport::H2 {
                    tls: Transport::tls(&pem, b"h2")?,
                    per_connection: 100,
                }
            } else {
                Transport::Tls(Transport::tls(&pem, b"http/1.1")?)
            };
            let client = reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes())?)
                .build()?;
            (args, transport, client)
        }
    };
    let target = Target::start(Kind::Hub, programs, &args)?;
    let total = (rate as f64 * window.as_secs_f64()) as usize;
    let times = SendTimes::new(total);
    let selection = Selection::one();
    let subscribe = Subscribe::to(selection.path());
    let run = Loaded::load(
        target,
        &transport,
        n,
        subscribe,
        LatencyFrom::Publish(times.clone()),
    )
    .await?;
    let connect = run.connect;
    let cpu = run.target.cpu_seconds();
    run.stats.count(true);
    let url = format!("{}{}", run.target.url, Kind::Hub.publish_path());
    let acked = publish_at_rate(&client, &[url], &selection.streams, rate, total, &times).await;
    let expected = delivered_to_all(&run.stats, acked).await;
    let cpu_s = run.target.cpu_seconds() - cpu;
    Ok((run.finish(n, window, cpu_s, expected), connect))
}

/// B and G: `n` subscribers of `selection` while `rate` publishes a second go to its
/// streams in turn, measured for `window`.
pub async fn fan_out_over(
    kind: Kind,
    programs: &Programs,
    n: usize,
    rate: u32,
    window: Duration,
    selection: &Selection,
) -> anyhow::Result<FanOut> {
    let total = (rate as f64 * window.as_secs_f64()) as usize;
    let times = SendTimes::new(total);
    let subscribe = Subscribe::to(selection.path());
    let run = Loaded::start(
        kind,
        programs,
        n,
        subscribe,
        LatencyFrom::Publish(times.clone()),
    )
    .await?;
    let cpu = run.target.cpu_seconds();
    run.stats.count(true);
    let url = format!("{}{}", run.target.url, run.target.kind.publish_path());
    let client = reqwest::Client::new();
    let acked = publish_at_rate(&client, &[url], &selection.streams, rate, total, &times).await;
    let expected = delivered_to_all(&run.stats, acked).await;
    let cpu_s = run.target.cpu_seconds() - cpu;
    Ok(run.finish(n, window, cpu_s, expected))
}

/// Lets the last of `acked` publishes reach every connected subscriber (10 s at most),
/// then stops counting; returns how many deliveries were expected.
async fn delivered_to_all(stats: &Stats, acked: u64) -> u64 {
    let expected = stats.connected.load(Ordering::Relaxed) * acked;
    delivered(stats, expected).await
}

/// Lets `expected` deliveries arrive (10 s at most), then stops counting; returns
/// `expected`.
async fn delivered(stats: &Stats, expected: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.events.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stats.count(false);
    expected
}

/// Sends `total` publishes titled `b-0`, `b-1`, … at `rate` a second (each on its own
/// task, so a slow answer does not slow the rate), to the publish URLs `urls` and the
/// `streams` in turn; returns how many were acknowledged.
async fn publish_at_rate(
    client: &reqwest::Client,
    urls: &[String],
    streams: &[String],
    rate: u32,
    total: usize,
    times: &Arc<SendTimes>,
) -> u64 {
    let acked = Arc::new(AtomicU64::new(0));
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = Vec::with_capacity(total);
    for n in 0..total {
        interval.tick().await;
        let url = urls[n % urls.len()].clone();
        let stream = streams[n % streams.len()].clone();
        let (client, acked, times) = (client.clone(), acked.clone(), times.clone());
        sends.push(tokio::spawn(async move {
            times.mark(n);
            let body = serde_json::json!({ "stream": stream, "title": format!("b-{n}") });
            if let Ok(response) = client.post(&url).json(&body).send().await {
                if response.status().is_success() {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    futures::future::join_all(sends).await;
    acked.load(Ordering::Relaxed)
}

/// C's figures: acknowledged publishes per second.
#[derive(Clone, Debug)]
pub struct Throughput {
    pub publishers: usize,
    pub streams: usize,
    pub acked: u64,
    pub failed: u64,
    pub window: Duration,
}

impl Throughput {
    pub fn per_s(&self) -> f64 {
        self.acked as f64 / self.window.as_secs_f64()
    }
}

/// C: `publishers` concurrent publishers, each publishing as fast as it is answered, to
/// one stream or spread over `streams`.
pub async fn publish_throughput(
    target: &Target,
    publishers: usize,
    streams: usize,
    window: Duration,
) -> Throughput {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(publishers)
        .build()
        .expect("client");
    // Parsed once: parsing it for every request took a visible share of the CPU that the
    // server under test shares with the load generator.
    let url: reqwest::Url = format!("{}/api/notifications", target.url)
        .parse()
        .expect("the target's URL");
    let (acked, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let deadline = Instant::now() + window;
    let tasks: Vec<_> = (0..publishers)
        .map(|p| {
            let (client, url, acked, failed) =
                (client.clone(), url.clone(), acked.clone(), failed.clone());
            tokio::spawn(async move {
                let mut n = 0usize;
                while Instant::now() < deadline {
                    let stream = format!("c-{}", (p + n * publishers) % streams);
                    let body =
                        serde_json::json!({ "stream": stream, "title": format!("c{p}-{n}") });
                    match client.post(url.clone()).json(&body).send().await {
                        Ok(r) if r.status().is_success() => acked.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    n += 1;
                }
            })
        })
        .collect();
    futures::future::join_all(tasks).await;
    Throughput {
        publishers,
        streams,
        acked: acked.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        window,
    }
}

/// D's figures.
#[derive(Clone, Debug)]
pub struct Storm {
    pub clients: usize,
    pub behind: usize,
    pub caught_up: u64,
    pub failed: u64,
    pub seconds: f64,
    pub healthz_p50_ms: f64,
    pub healthz_p99_ms: f64,
    pub healthz_max_ms: f64,
}

/// D: `clients` reconnect at once, each `behind` events behind; time until all caught up,
/// and `/healthz` latency meanwhile.
pub async fn replay_storm(
    programs: &Programs,
    clients: usize,
    behind: usize,
) -> anyhow::Result<Storm> {
    let target = Target::start(Kind::Hub, programs, &[])?;
    let client = reqwest::Client::new();
    let url = format!("{}/api/notifications", target.url);
    futures::future::join_all((0..behind).map(|n| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let body = serde_json::json!({ "stream": "storm", "title": format!("s-{n}") });
            client.post(&url).json(&body).send().await
        }
    }))
    .await;

    let probe_latency = Arc::new(Mutex::new(Histogram::<u64>::new(3).expect("histogram")));
    let probing = {
        let (client, url, latency) = (
            client.clone(),
            format!("{}/healthz", target.url),
            probe_latency.clone(),
        );
        tokio::spawn(async move {
            loop {
                let start = Instant::now();
                if client.get(&url).send().await.is_ok() {
                    latency
                        .lock()
                        .unwrap()
                        .record(start.elapsed().as_micros() as u64)
                        .ok();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let stats = Stats::new();
    let start = Instant::now();
    let subscribe = Subscribe {
        path: "/events?stream=storm".into(),
        last_event_id: Some("0".into()),
        until: Some(behind as u64),
        ..Subscribe::default()
    };
    let connections = load::open(
        addr(&target)?,
        clients,
        subscribe,
        LatencyFrom::Timestamp,
        stats.clone(),
        CONNECT_LIMIT,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while stats.done.load(Ordering::Relaxed) + stats.failed.load(Ordering::Relaxed) < clients as u64
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    probing.abort();
    drop(connections);
    let latency = probe_latency.lock().unwrap();
    Ok(Storm {
        clients,
        behind,
        caught_up: stats.done.load(Ordering::Relaxed),
        failed: stats.failed.load(Ordering::Relaxed),
        seconds,
        healthz_p50_ms: latency.value_at_quantile(0.5) as f64 / 1000.0,
        healthz_p99_ms: latency.value_at_quantile(0.99) as f64 / 1000.0,
        healthz_max_ms: latency.max() as f64 / 1000.0,
    })
}

/// E: `n` idle subscribers; the server memory they add.
pub async fn idle_memory(kind: Kind, programs: &Programs, n: usize) -> anyhow::Result<FanOut> {
    let subscribe = Subscribe::to("/events?stream=idle");
    let run = Loaded::start(kind, programs, n, subscribe, LatencyFrom::Timestamp).await?;
    // Let the connections settle (first heartbeat sent, buffers in their steady state).
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(run.finish(n, SETTLE, 0.0, 0))
}

/// J: `n` users on one instance, each subscribed to a stream of its own (`user.N`, the
/// usual shape of a notification hub): the memory per idle subscriber (measured before any
/// publish), then `rate` publishes a second for `window`, each to one user picked at
/// random (every user at most once): delivered, and latency from the publish's send.
pub async fn per_user(
    kind: Kind,
    programs: &Programs,
    n: usize,
    rate: u32,
    window: Duration,
) -> anyhow::Result<FanOut> {
    let total = ((rate as f64 * window.as_secs_f64()) as usize).min(n);
    let times = SendTimes::new(total);
    let subscribe = Subscribe::to("/events?stream=user.{n}");
    let run = Loaded::start(
        kind,
        programs,
        n,
        subscribe,
        LatencyFrom::Publish(times.clone()),
    )
    .await?;
    let rss_idle = run.target.rss();
    let cpu = run.target.cpu_seconds();
    run.stats.count(true);
    let mut users: Vec<String> = (0..n).map(|user| format!("user.{user}")).collect();
    fastrand::Rng::with_seed(36).shuffle(&mut users);
    users.truncate(total);
    let url = format!("{}{}", run.target.url, run.target.kind.publish_path());
    let client = reqwest::Client::new();
    let acked = publish_at_rate(&client, &[url], &users, rate, total, &times).await;
    // One subscriber each: every acknowledged publish is one delivery.
    let expected = delivered(&run.stats, acked).await;
    let cpu_s = run.target.cpu_seconds() - cpu;
    let mut figures = run.finish(n, window, cpu_s, expected);
    figures.rss_after = rss_idle;
    Ok(figures)
}

/// Where workload F keeps its notifications.
#[derive(Clone, Copy, Debug)]
pub enum Setup {
    /// One instance on its SQLite file: the reference.
    Sqlite,
    /// This many instances sharing one Redis.
    Redis(usize),
}

impl Setup {
    pub fn name(self) -> String {
        match self {
            Setup::Sqlite => "1 instance, SQLite".into(),
            Setup::Redis(1) => "1 instance, Redis".into(),
            Setup::Redis(n) => format!("{n} instances, one Redis"),
        }
    }
}

/// F: workload B (`n` subscribers of one stream, `rate` publishes a second for `window`)
/// on `setup`. With several instances the subscribers are spread evenly over them and
/// publishes go to each in turn, so most notifications cross instances through Redis.
/// CPU and memory are summed over the instances (not Redis).
pub async fn fan_out_across_instances(
    setup: Setup,
    programs: &Programs,
    redis: &str,
    n: usize,
    rate: u32,
    window: Duration,
) -> anyhow::Result<FanOut> {
    let targets = match setup {
        Setup::Sqlite => vec![Target::start(Kind::Hub, programs, &[])?],
        Setup::Redis(instances) => (0..instances)
            .map(|_| {
                // One hub per setup: its instances share a key prefix, other setups not.
                let prefix = format!("bench-{}-{instances}", std::process::id());
                Target::start(
                    Kind::Hub,
                    programs,
                    &["--redis", redis, "--redis-prefix", &prefix],
                )
            })
            .collect::<anyhow::Result<_>>()?,
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss = |targets: &[Target]| targets.iter().map(Target::rss).sum::<u64>();
    let cpu = |targets: &[Target]| targets.iter().map(Target::cpu_seconds).sum::<f64>();
    let rss_before = rss(&targets);
    let total = (rate as f64 * window.as_secs_f64()) as usize;
    let times = SendTimes::new(total);
    let stats = Stats::new();
    let mut connections = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let share = n / targets.len() + usize::from(i < n % targets.len());
        let subscribe = Subscribe::to(Selection::one().path());
        let latency = LatencyFrom::Publish(times.clone());
        connections.push(
            load::open(
                addr(target)?,
                share,
                subscribe,
                latency,
                stats.clone(),
                CONNECT_LIMIT,
            )
            .await,
        );
    }
    tokio::time::sleep(SETTLE).await;
    let cpu_before = cpu(&targets);
    stats.count(true);
    let urls: Vec<String> = targets
        .iter()
        .map(|t| format!("{}{}", t.url, Kind::Hub.publish_path()))
        .collect();
    let client = reqwest::Client::new();
    let acked = publish_at_rate(
        &client,
        &urls,
        &Selection::one().streams,
        rate,
        total,
        &times,
    )
    .await;
    let expected = delivered_to_all(&stats, acked).await;
    let mut run = FanOut::measure(Kind::Hub, n, &stats, window);
    run.cpu_s = cpu(&targets) - cpu_before;
    run.rss_before = rss_before;
    run.rss_after = rss(&targets);
    run.expected = expected;
    drop(connections);
    Ok(run)
}

/// I's figures: one kind of server as several instances, each with a load worker of its own.
#[derive(Clone, Debug)]
pub struct Crowd {
    /// Notifications only in `events` and `expected`; latencies of notifications and ticks.
    pub run: FanOut,
    pub instances: usize,
    /// Whether each subscriber also had the clock every second.
    pub clock: bool,
    /// Clock ticks received, and missed (gaps between consecutive ticks).
    pub ticks: u64,
    pub ticks_missed: u64,
    /// How long it took every subscriber to connect.
    pub connect: Duration,
    /// Each process's name, resident memory at the end and CPU seconds in the window.
    pub processes: Vec<(String, u64, f64)>,
}

impl Crowd {
    /// What each subscriber followed, in words.
    pub fn follows(&self) -> &'static str {
        if self.clock {
            "a stream, the clock"
        } else {
            "a stream"
        }
    }
}

/// How long the last notification of workload I may take to count as delivered (no
/// longer than the window).
const CROWD_DRAIN: Duration = Duration::from_secs(5);

/// I: `per_instance` subscribers on each of `instances` servers of `kind` (ours sharing
/// the Redis at `redis`), each following one stream (and, with `clock`, the clock every
/// second on the same connection), while one notification a second is published for
/// `window`. Each instance gets a load worker of
/// its own, connecting from its own loopback address. Ours gets each publish on one
/// instance in turn (Redis carries it to the others); the raw writer, which shares
/// nothing, gets it on every instance.
pub async fn crowd(
    kind: Kind,
    programs: &Programs,
    redis: Option<&e2e::redis::RedisServer>,
    instances: usize,
    per_instance: usize,
    clock: bool,
    window: Duration,
) -> anyhow::Result<Crowd> {
    let prefix = format!("bench-crowd-{}", std::process::id());
    let hub_args: Vec<&str> = match redis {
        Some(redis) => vec!["--redis", &redis.url, "--redis-prefix", &prefix],
        None => vec![],
    };
    let targets = (0..instances)
        .map(|_| Target::start(kind, programs, &hub_args))
        .collect::<anyhow::Result<Vec<_>>>()?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before: u64 = targets.iter().map(Target::rss).sum();
    let started = Instant::now();
    let mut workers = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        workers.push(Worker::start(&Share {
            addr: addr(target)?,
            from: IpAddr::from([127, 0, 0, 10 + i as u8]),
            n: per_instance,
            path: format!(
                "/events?stream=crowd{}",
                if clock { "&clock_ms=1000" } else { "" }
            ),
            ticks_every_ms: clock.then_some(1000),
        })?);
    }
    for (i, worker) in workers.iter_mut().enumerate() {
        let (connected, failed) = worker.connected().await?;
        eprintln!(
            "bench: load worker {}: {connected} connected, {failed} failed, {:.1} s",
            i + 1,
            started.elapsed().as_secs_f64()
        );
    }
    let connect = started.elapsed();
    tokio::time::sleep(SETTLE).await;

    let mut pids: Vec<(String, u32)> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("{} {}", kind.name(), i + 1), t.pid()))
        .collect();
    pids.extend(
        redis
            .and_then(|r| r.pid())
            .map(|pid| ("Redis".to_owned(), pid)),
    );
    pids.extend(
        workers
            .iter()
            .enumerate()
            .map(|(i, w)| (format!("load worker {}", i + 1), w.pid())),
    );
    let cpu_before: Vec<f64> = pids
        .iter()
        .map(|(_, pid)| target::cpu_seconds(*pid))
        .collect();
    for worker in &mut workers {
        worker.count().await?;
    }
    let urls: Vec<String> = targets
        .iter()
        .map(|t| format!("{}{}", t.url, kind.publish_path()))
        .collect();
    let acked = publish_each_second(kind, &urls, window).await;
    tokio::time::sleep(CROWD_DRAIN.min(window)).await;
    let stats = Stats::new();
    for worker in &mut workers {
        worker.stop(&stats).await?;
    }
    let processes = pids
        .iter()
        .zip(&cpu_before)
        .map(|((name, pid), before)| {
            let cpu = target::cpu_seconds(*pid) - before;
            (name.clone(), target::rss(*pid), cpu)
        })
        .collect::<Vec<_>>();
    let mut run = FanOut::measure(kind, instances * per_instance, &stats, window);
    run.expected = run.connected * acked;
    run.rss_before = rss_before;
    run.rss_after = targets.iter().map(Target::rss).sum();
    run.cpu_s = processes[..instances].iter().map(|p| p.2).sum();
    Ok(Crowd {
        run,
        instances,
        clock,
        ticks: stats.ticks.load(Ordering::Relaxed),
        ticks_missed: stats.ticks_missed.load(Ordering::Relaxed),
        connect,
        processes,
    })
}

/// Publishes one notification a second to the stream `crowd` for `window`, titled with the
/// time it is sent: ours on one of `urls` in turn, the raw writer on all of them. Returns
/// how many were acknowledged (by every URL, for the raw writer).
async fn publish_each_second(kind: Kind, urls: &[String], window: Duration) -> u64 {
    // A connection each: the raw writer closes its connection after answering, and a
    // pooled one found closed a second later would fail the publish it was reused for.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("a plain HTTP client");
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    let mut acked = 0;
    for n in 0..window.as_secs() as usize {
        interval.tick().await;
        let body = serde_json::json!({ "stream": "crowd", "title": load::sent_at_title() });
        let to = match kind {
            Kind::Hub => &urls[n % urls.len()..][..1],
            _ => urls,
        };
        let sends = to.iter().map(|url| client.post(url).json(&body).send());
        let answers = futures::future::join_all(sends).await;
        if answers
            .iter()
            .all(|a| a.as_ref().is_ok_and(|r| r.status().is_success()))
        {
            acked += 1;
        }
    }
    acked
}

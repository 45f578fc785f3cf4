//! The soak (`bench --soak MINUTES`): a long run with subscribers coming and going, for what
//! only time shows: memory, file descriptors or tasks that leak slowly, and a delivery that
//! goes wrong once in a great many.
//!
//! A population of subscribers over [`STREAMS`] streams, each living a random time (so that
//! as many arrive as leave every second); one arrival in ten resumes from an id well back in
//! its stream, so that some leave mid-replay. A publisher sends at a steady rate, round
//! robin over the streams. Every sample it reads the server's RSS, open fds and tasks, the
//! p99 of publish → delivery, and delivery: each subscriber that left is checked against
//! what was acknowledged on its stream, from where it started to where it stopped: every
//! id once, in order, and nothing acknowledged more than [`GRACE`] before it left missing.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use hdrhistogram::Histogram;
use http_body_util::{BodyDataStream, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::load::SendTimes;
use crate::target::{Kind, Programs, Target};

/// Streams the subscribers and the publisher spread over.
pub const STREAMS: usize = 20;
/// How long before a subscriber leaves an acknowledged notification must have reached it.
const GRACE: Duration = Duration::from_secs(2);
/// How far back (in entries of its stream) a resuming subscriber starts.
pub const RESUME_BACK: usize = 200;
/// One live event in this many has its latency measured (replays are old by design).
const LATENCY_SAMPLE: u64 = 8;

/// The sizes of a soak.
pub struct Plan {
    pub minutes: u64,
    /// Subscribers connected at any time.
    pub population: usize,
    /// The mean time a subscriber stays: `population / lifetime` arrive (and leave) a second.
    pub lifetime: Duration,
    pub publishes_per_s: u32,
    /// Time between samples.
    pub every: Duration,
    /// Samples before the first that counts for the memory and fd bounds.
    pub warm_up: usize,
}

impl Plan {
    /// The soak of the issue: 5,000 subscribers, 100 arriving and 100 leaving a second, 200
    /// publishes a second, a sample a minute; or a small one (`quick`, for the test run) with
    /// a sample every 10 s.
    pub fn new(minutes: u64, quick: bool) -> Self {
        if quick {
            Self {
                minutes,
                population: 300,
                lifetime: Duration::from_secs(10),
                publishes_per_s: 40,
                every: Duration::from_secs(10),
                warm_up: 2,
            }
        } else {
            Self {
                minutes,
                population: 5_000,
                lifetime: Duration::from_secs(50),
                publishes_per_s: 200,
                every: Duration::from_secs(60),
                // Until each stream's recent entries in memory are full (4,096,
                // `RECENT_PER_STREAM` in the server's `hub/channels.rs`): 410 s at 10
                // publishes a second per stream.
                warm_up: (minutes as usize / 6).max(8),
            }
        }
    }
}

/// One sample of a soak.
#[derive(Clone, Debug)]
pub struct Sample {
    pub at: Duration,
    pub rss: u64,
    pub fds: usize,
    pub tasks: f64,
    pub connected: u64,
    pub p99_ms: f64,
    /// Subscribers that left and were checked since the last sample.
    pub checked: usize,
    /// Of the notifications they should have had, the share they had (1.0: all).
    pub delivery: f64,
    /// Ids out of order, twice, or not acknowledged, since the last sample.
    pub wrong: usize,
}

impl Sample {
    /// The sample as a row of the results table (also the line printed as it comes).
    pub fn row(&self) -> String {
        format!(
            "| {:.0} s | {:.1} MiB | {} | {:.0} | {} | {:.1} | {} | {:.3} % | {} |",
            self.at.as_secs_f64(),
            self.rss as f64 / 1048576.0,
            self.fds,
            self.tasks,
            self.connected,
            self.p99_ms,
            self.checked,
            self.delivery * 100.0,
            self.wrong
        )
    }
}

/// What a soak found.
pub struct Soak {
    pub plan: Plan,
    pub samples: Vec<Sample>,
    pub sessions: u64,
    pub published: u64,
}

impl Soak {
    /// The samples that count for the bounds (after warm-up).
    pub fn settled(&self) -> &[Sample] {
        &self.samples[self.plan.warm_up.min(self.samples.len().saturating_sub(1))..]
    }

    /// How far `value` spreads over the settled samples: (max − min) / min.
    pub fn spread(&self, value: impl Fn(&Sample) -> f64) -> f64 {
        let values: Vec<f64> = self.settled().iter().map(value).collect();
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(0.0, f64::max);
        if min > 0.0 {
            (max - min) / min
        } else {
            0.0
        }
    }

    /// Delivery over the whole run, and the ids wrong.
    pub fn delivery(&self) -> (f64, usize) {
        let checked: usize = self.samples.iter().map(|s| s.checked).sum();
        let weighted: f64 = self
            .samples
            .iter()
            .map(|s| s.delivery * s.checked as f64)
            .sum();
        let wrong = self.samples.iter().map(|s| s.wrong).sum();
        (
            if checked > 0 {
                weighted / checked as f64
            } else {
                0.0
            },
            wrong,
        )
    }
}

/// What the publisher had acknowledged: per stream, the ids and when each was answered.
struct Acknowledged {
    streams: Vec<Mutex<Vec<(u64, Instant)>>>,
}

impl Acknowledged {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            streams: (0..STREAMS).map(|_| Mutex::default()).collect(),
        })
    }

    fn record(&self, stream: usize, id: u64) {
        let mut acked = self.streams[stream].lock().unwrap();
        // Answers may come back out of order; keep the list in id order.
        let at = acked.partition_point(|&(other, _)| other < id);
        acked.insert(at, (id, Instant::now()));
    }

    /// An id about `back` entries before the newest of `stream`.
    fn back(&self, stream: usize, back: usize) -> Option<u64> {
        let acked = self.streams[stream].lock().unwrap();
        acked.len().checked_sub(back + 1).map(|at| acked[at].0)
    }
}

/// One subscriber's stay: where it started, what it got, when it left.
struct Stay {
    stream: usize,
    start: u64,
    got: Vec<u64>,
    left: Instant,
}

impl Stay {
    /// Checks the stay against what was acknowledged: (notifications it should have had,
    /// of them had, ids wrong).
    fn check(&self, acknowledged: &Acknowledged) -> (usize, usize, usize) {
        let acked = acknowledged.streams[self.stream].lock().unwrap();
        let last = self.got.last().copied().unwrap_or(self.start);
        let expected: Vec<u64> = acked
            .iter()
            .filter(|&&(id, at)| id > self.start && (id <= last || at + GRACE < self.left))
            .map(|&(id, _)| id)
            .collect();
        let mut wrong = self.got.windows(2).filter(|w| w[0] >= w[1]).count();
        let known: HashSet<u64> = expected.iter().copied().collect();
        wrong += self.got.iter().filter(|id| !known.contains(id)).count();
        let had = self.got.iter().filter(|id| known.contains(id)).count();
        (expected.len(), had.min(expected.len()), wrong)
    }
}

/// What the subscribers share: counts, latencies, and the stays to check.
struct Shared {
    acknowledged: Arc<Acknowledged>,
    sent: Arc<SendTimes>,
    connected: AtomicU64,
    sessions: AtomicU64,
    latency_us: Mutex<Histogram<u64>>,
    left: Mutex<Vec<Stay>>,
    /// Set when the soak is over: the subscribers still reading are cut off then.
    over: AtomicBool,
}

/// Runs the soak against our server (SQLite, default settings), printing each sample.
pub async fn run(programs: &Programs, plan: Plan) -> anyhow::Result<Soak> {
    let target = Target::start(Kind::Hub, programs, &[])?;
    let addr: SocketAddr = target.url.trim_start_matches("http://").parse()?;
    let duration = Duration::from_secs(plan.minutes * 60);
    let publishes = (duration.as_secs() + 60) as usize * plan.publishes_per_s as usize;
    let shared = Arc::new(Shared {
        acknowledged: Acknowledged::new(),
        sent: SendTimes::new(publishes),
        connected: AtomicU64::new(0),
        sessions: AtomicU64::new(0),
        latency_us: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3)?),
        left: Mutex::default(),
        over: AtomicBool::new(false),
    });
    let publisher = tokio::spawn(publish(
        target.url.clone(),
        plan.publishes_per_s,
        shared.clone(),
    ));
    // Some history first, for the resuming subscribers to start in.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let arrivals = tokio::spawn(arrive(addr, plan.population, plan.lifetime, shared.clone()));
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut pending: Vec<Stay> = Vec::new();
    while started.elapsed() < duration {
        tokio::time::sleep(plan.every.min(duration.saturating_sub(started.elapsed()))).await;
        pending.append(&mut shared.left.lock().unwrap());
        // Stays that ended within GRACE are checked next time: their last acknowledgements
        // may still be on their way.
        let now = Instant::now();
        let (ready, later): (Vec<Stay>, Vec<Stay>) =
            pending.drain(..).partition(|stay| stay.left + GRACE < now);
        pending = later;
        let (mut expected, mut had, mut wrong) = (0, 0, 0);
        for stay in &ready {
            let (e, h, w) = stay.check(&shared.acknowledged);
            expected += e;
            had += h;
            wrong += w;
        }
        let p99_ms = {
            let mut latency = shared.latency_us.lock().unwrap();
            let p99 = latency.value_at_quantile(0.99) as f64 / 1000.0;
            latency.reset();
            p99
        };
        let sample = Sample {
            at: started.elapsed(),
            rss: target.rss(),
            fds: target.open_fds(),
            tasks: tasks(&target.url).await.unwrap_or(f64::NAN),
            connected: shared.connected.load(Ordering::Relaxed),
            p99_ms,
            checked: ready.len(),
            delivery: if expected > 0 {
                had as f64 / expected as f64
            } else {
                1.0
            },
            wrong,
        };
        eprintln!("soak: {}", sample.row());
        samples.push(sample);
    }
    shared.over.store(true, Ordering::Relaxed);
    arrivals.abort();
    publisher.abort();
    Ok(Soak {
        plan,
        samples,
        sessions: shared.sessions.load(Ordering::Relaxed),
        published: shared
            .acknowledged
            .streams
            .iter()
            .map(|s| s.lock().unwrap().len() as u64)
            .sum(),
    })
}

/// `notify_hub_tasks` from the server's metrics.
async fn tasks(url: &str) -> anyhow::Result<f64> {
    let page = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    page.lines()
        .find_map(|line| line.strip_prefix("notify_hub_tasks ")?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no notify_hub_tasks in the metrics"))
}

/// Publishes `rate` a second, round robin over the streams, titled `b-N` (for latency).
async fn publish(url: String, rate: u32, shared: Arc<Shared>) {
    let client = reqwest::Client::new();
    let mut every = tokio::time::interval(Duration::from_secs(1) / rate);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for n in 0usize.. {
        every.tick().await;
        let (client, url, shared) = (client.clone(), url.clone(), shared.clone());
        tokio::spawn(async move {
            let stream = n % STREAMS;
            shared.sent.mark(n);
            let response = client
                .post(format!("{url}/api/notifications"))
                .json(&serde_json::json!({"stream": format!("soak-{stream}"), "title": format!("b-{n}")}))
                .send()
                .await;
            if shared.over.load(Ordering::Relaxed) {
                return;
            }
            let stored = match response {
                Ok(response) if response.status().as_u16() == 201 => {
                    response.json::<serde_json::Value>().await.ok()
                }
                Ok(response) => {
                    eprintln!("soak: a publish got {}", response.status());
                    None
                }
                Err(err) => {
                    let mut why = err.to_string();
                    let mut cause = std::error::Error::source(&err);
                    while let Some(inner) = cause {
                        why.push_str(&format!(": {inner}"));
                        cause = inner.source();
                    }
                    eprintln!("soak: a publish failed: {why}");
                    None
                }
            };
            if let Some(id) = stored.and_then(|s| s["id"].as_str()?.parse().ok()) {
                shared.acknowledged.record(stream, id);
            }
        });
    }
}

/// Keeps `population` subscribers coming: the first all at once (256 handshakes at a
/// time), then one whenever, on average, one leaves.
async fn arrive(addr: SocketAddr, population: usize, lifetime: Duration, shared: Arc<Shared>) {
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    for _ in 0..population {
        let permit = gate.clone().acquire_owned().await.ok();
        tokio::spawn(stay(addr, lifetime, shared.clone(), permit));
    }
    let mut every = tokio::time::interval(lifetime / population as u32);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        every.tick().await;
        tokio::spawn(stay(addr, lifetime, shared.clone(), None));
    }
}

/// One subscriber: connects to a random stream (one in ten from an id well back), reads
/// until its time is up (between none and twice the mean lifetime), and leaves its stay
/// to be checked.
async fn stay(
    addr: SocketAddr,
    lifetime: Duration,
    shared: Arc<Shared>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let stream = fastrand::usize(..STREAMS);
    let resume_from = (fastrand::u8(..10) == 0)
        .then(|| shared.acknowledged.back(stream, RESUME_BACK))
        .flatten();
    let until = Instant::now() + lifetime.mul_f64(fastrand::f64() * 2.0);
    let read = read(addr, stream, resume_from, &shared, permit);
    // Time up is the usual way to leave.
    if let Ok(Err(err)) = tokio::time::timeout_at(until.into(), read).await {
        if !shared.over.load(Ordering::Relaxed) {
            eprintln!("soak: a subscriber failed: {err:#}");
        }
    }
}

/// Reads one subscriber's events until the stream fails or ends (or the caller's time is
/// up and drops it); its [`Reader`] hands the stay over to be checked.
async fn read(
    addr: SocketAddr,
    stream: usize,
    resume_from: Option<u64>,
    shared: &Arc<Shared>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> anyhow::Result<()> {
    let socket = TcpStream::connect(addr).await?;
    socket.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(socket)).await?;
    tokio::spawn(conn);
    let mut request = hyper::Request::get(format!("/events?stream=soak-{stream}"))
        .header("host", addr.to_string())
        .header("accept", "text/event-stream");
    if let Some(id) = resume_from {
        request = request.header("last-event-id", id.to_string());
    }
    let response = sender
        .send_request(request.body(Empty::<Bytes>::new())?)
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "status {}",
        response.status()
    );
    drop(permit);
    let mut events = BodyDataStream::new(response.into_body()).eventsource();
    let mut reader: Option<Reader> = None;
    let mut messages = 0u64;
    while let Some(event) = events.next().await {
        let event = event?;
        match (&mut reader, event.event.as_str()) {
            (None, "heartbeat") => {
                shared.connected.fetch_add(1, Ordering::Relaxed);
                shared.sessions.fetch_add(1, Ordering::Relaxed);
                reader = Some(Reader {
                    stay: Some(Stay {
                        stream,
                        start: event.id.parse()?,
                        got: Vec::new(),
                        left: Instant::now(),
                    }),
                    shared: shared.clone(),
                });
            }
            (Some(reader), "message") => {
                reader.got(event.id.parse()?);
                messages += 1;
                // Live events only: a resumed stay's replay is old by design.
                if resume_from.is_none() && messages.is_multiple_of(LATENCY_SAMPLE) {
                    shared.latency(&event.data);
                }
            }
            (_, "reset") => anyhow::bail!("a reset: entries were lost to retention"),
            _ => {}
        }
    }
    anyhow::bail!("the server ended the stream")
}

/// A subscriber's stay while it reads; handed over to be checked when dropped.
struct Reader {
    stay: Option<Stay>,
    shared: Arc<Shared>,
}

impl Reader {
    fn got(&mut self, id: u64) {
        if let Some(stay) = &mut self.stay {
            stay.got.push(id);
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(mut stay) = self.stay.take() {
            stay.left = Instant::now();
            self.shared.left.lock().unwrap().push(stay);
            self.shared.connected.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Shared {
    /// Measures the latency of the notification whose data is `data` (titled `b-N`).
    fn latency(&self, data: &str) {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(data) else {
            return;
        };
        let Some(n) = value["title"]
            .as_str()
            .and_then(|t| t.strip_prefix("b-")?.parse().ok())
        else {
            return;
        };
        if let Some(latency) = self.sent.since(n) {
            let us = (latency.as_micros() as u64).clamp(1, 600_000_000);
            self.latency_us.lock().unwrap().record(us).ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stay_is_checked_against_what_was_acknowledged() {
        let long_ago = Instant::now() - Duration::from_secs(60);
        let acked = Acknowledged::new();
        for id in [10, 12, 15, 20, 22] {
            acked.streams[3].lock().unwrap().push((id, long_ago));
        }
        let stay = |got: Vec<u64>| Stay {
            stream: 3,
            start: 10,
            got,
            left: Instant::now(),
        };
        // Everything after the start, once, in order.
        assert_eq!(stay(vec![12, 15, 20, 22]).check(&acked), (4, 4, 0));
        // One missing in the middle, one missing at the end (acknowledged long before).
        assert_eq!(stay(vec![12, 20]).check(&acked), (4, 2, 0));
        // Twice, and one never acknowledged; out of order.
        assert_eq!(stay(vec![12, 12, 15, 99]).check(&acked).2, 2);
        assert_eq!(stay(vec![15, 12, 20, 22]).check(&acked).2, 1);
    }
}

//! The load generator: many SSE connections on loopback, each reading every event, and
//! what they measured (connections, events, latency on arrival).
//!
//! Each subscriber is a hyper HTTP/1 client over its own socket, plain or TLS, or one of
//! several streams of an HTTP/2 connection over TLS ([`Transport`]); events are parsed with
//! `eventsource-stream`. Latency is the receive time minus the time the event carries: the
//! timestamp in a clock event's data, or, for a notification titled `b-N`, the instant the
//! publisher sent publish number N (or, titled `at-µs`, the wall-clock time it was sent,
//! for a load generator in another process: see `worker.rs`).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use hdrhistogram::Histogram;
use http_body_util::{BodyDataStream, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

/// One event in this many has its latency measured (the first of each connection included).
const LATENCY_SAMPLE: u64 = 4;

/// When each publish was sent, for publish → deliver latency.
pub struct SendTimes {
    base: Instant,
    sent_us: Vec<AtomicU64>,
}

impl SendTimes {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            sent_us: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// Notes that publish `n` is being sent now.
    pub fn mark(&self, n: usize) {
        if let Some(slot) = self.sent_us.get(n) {
            slot.store(self.base.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
    }

    /// How long ago publish `n` was sent (`None` before it was).
    pub fn since(&self, n: usize) -> Option<Duration> {
        let sent = self.sent_us.get(n)?.load(Ordering::Relaxed);
        let now = self.base.elapsed().as_micros() as u64;
        (sent > 0).then(|| Duration::from_micros(now.saturating_sub(sent)))
    }
}

/// What an event's latency is measured against.
#[derive(Clone)]
pub enum LatencyFrom {
    /// The RFC 3339 timestamp that is the event's data (clock events).
    Timestamp,
    /// The send time of the publish named in the data's `title` (`b-N`).
    Publish(Arc<SendTimes>),
    /// The wall-clock time the event carries, which another process can read: a clock
    /// event's timestamp, or a notification's `title` `at-µs` (Unix microseconds, stamped
    /// by its publisher as it sent it; see [`sent_at_title`]).
    Wall,
}

impl LatencyFrom {
    fn of(&self, event: &str, data: &str) -> Option<Duration> {
        match self {
            LatencyFrom::Timestamp => since_timestamp(data),
            LatencyFrom::Wall if event == "time" => since_timestamp(data),
            LatencyFrom::Wall => {
                let value: serde_json::Value = serde_json::from_str(data).ok()?;
                let sent: i64 = value["title"].as_str()?.strip_prefix("at-")?.parse().ok()?;
                let now = chrono::Utc::now().timestamp_micros();
                Some(Duration::from_micros(
                    now.checked_sub(sent)?.try_into().ok()?,
                ))
            }
            LatencyFrom::Publish(times) => {
                let value: serde_json::Value = serde_json::from_str(data).ok()?;
                let n = value["title"].as_str()?.strip_prefix("b-")?.parse().ok()?;
                times.since(n)
            }
        }
    }
}

/// A notification title that carries the wall-clock time it is sent ([`LatencyFrom::Wall`]).
pub fn sent_at_title() -> String {
    format!("at-{}", chrono::Utc::now().timestamp_micros())
}

/// How long ago the RFC 3339 timestamp `data` was.
fn since_timestamp(data: &str) -> Option<Duration> {
    let sent = chrono::DateTime::parse_from_rfc3339(data.trim()).ok()?;
    (chrono::Utc::now() - sent.with_timezone(&chrono::Utc))
        .to_std()
        .ok()
}

/// What the connections of one run saw. Events and latencies count only while
/// [`Stats::counting`] is on, so the connect phase does not skew the window.
pub struct Stats {
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    /// `message` events (notifications, or the clock's ticks on `/sse/time`).
    pub events: AtomicU64,
    /// Clock ticks on a connection that also carries notifications ([`Subscribe::ticks_every`]).
    pub ticks: AtomicU64,
    /// Ticks those connections did not get: for each connection, the intervals its
    /// counted ticks' timestamps span, less the ticks it got (see [`TickCount`]).
    pub ticks_missed: AtomicU64,
    /// Connections that received all they were asked to wait for.
    pub done: AtomicU64,
    counting: AtomicBool,
    latency_us: Mutex<Histogram<u64>>,
}

impl Stats {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            events: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            ticks_missed: AtomicU64::new(0),
            done: AtomicU64::new(0),
            counting: AtomicBool::new(false),
            latency_us: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds")),
        })
    }

    /// Starts (or stops) counting events and latencies.
    pub fn count(&self, on: bool) {
        self.counting.store(on, Ordering::SeqCst);
    }

    /// Latency percentile `q` (0–100), in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        self.latency_us.lock().unwrap().value_at_quantile(q / 100.0) as f64 / 1000.0
    }

    /// Largest latency seen, in milliseconds.
    pub fn latency_max_ms(&self) -> f64 {
        self.latency_us.lock().unwrap().max() as f64 / 1000.0
    }

    /// The counts and latency histogram as JSON, for a worker to hand to the bench
    /// (`worker.rs`): the histogram as its recorded values with their counts.
    pub fn to_json(&self) -> serde_json::Value {
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let latency = self.latency_us.lock().unwrap();
        let latency_us: Vec<[u64; 2]> = latency
            .iter_recorded()
            .map(|v| [v.value_iterated_to(), v.count_at_value()])
            .collect();
        serde_json::json!({
            "connected": count(&self.connected),
            "failed": count(&self.failed),
            "events": count(&self.events),
            "ticks": count(&self.ticks),
            "ticks_missed": count(&self.ticks_missed),
            "done": count(&self.done),
            "latency_us": latency_us,
        })
    }

    /// Adds figures from [`Stats::to_json`] to these.
    pub fn add_json(&self, figures: &serde_json::Value) {
        let add = |c: &AtomicU64, name: &str| {
            c.fetch_add(figures[name].as_u64().unwrap_or(0), Ordering::Relaxed)
        };
        add(&self.connected, "connected");
        add(&self.failed, "failed");
        add(&self.events, "events");
        add(&self.ticks, "ticks");
        add(&self.ticks_missed, "ticks_missed");
        add(&self.done, "done");
        let mut latency = self.latency_us.lock().unwrap();
        for pair in figures["latency_us"].as_array().into_iter().flatten() {
            if let (Some(value), Some(count)) = (pair[0].as_u64(), pair[1].as_u64()) {
                latency.record_n(value, count).ok();
            }
        }
    }

    /// Counts one event, in `counter`; `latency` measures it (called for a sample of the
    /// events).
    fn record(&self, counter: &AtomicU64, latency: impl FnOnce() -> Option<Duration>) {
        if !self.counting.load(Ordering::Relaxed) {
            return;
        }
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(latency) = latency() {
            let us = (latency.as_micros() as u64).clamp(1, 600_000_000);
            self.latency_us.lock().unwrap().record(us).ok();
        }
    }
}

/// A set of open connections; dropping it closes them all.
pub struct Connections(Vec<JoinHandle<()>>);

impl Drop for Connections {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// One subscriber to open: the path (with query) and an optional `Last-Event-ID`.
#[derive(Clone, Default)]
pub struct Subscribe {
    pub path: String,
    pub last_event_id: Option<String>,
    /// Stop after this many `message` events (and count the connection as done).
    pub until: Option<u64>,
    /// The source address to connect from (one has ~28,000 ports towards a server port);
    /// `None` lets the system choose.
    pub from: Option<IpAddr>,
    /// The interval of the clock the path adds to a notification stream (`clock_ms`):
    /// its `time` events are counted as [`Stats::ticks`], and the gaps between them as
    /// [`Stats::ticks_missed`].
    pub ticks_every: Option<Duration>,
}

impl Subscribe {
    /// A subscriber of `path`, from the start, for as long as it stays open. A `{n}` in
    /// the path becomes each connection's number (see [`Subscribe::numbered`]).
    pub fn to(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }

    /// The `n`th connection's subscriber: its path with `{n}` replaced by `n` (workload
    /// J's stream per user).
    pub fn numbered(&self, n: usize) -> Self {
        Self {
            path: self.path.replace("{n}", &n.to_string()),
            ..self.clone()
        }
    }
}

/// How subscribers reach the server.
#[derive(Clone)]
pub enum Transport {
    /// HTTP/1.1 over TCP, a connection each.
    Plain,
    /// HTTP/1.1 over TLS, a connection each.
    Tls(TlsConnector),
    /// HTTP/2 over TLS, `per_connection` subscribers on each connection.
    H2 {
        tls: TlsConnector,
        per_connection: usize,
    },
}

impl Transport {
    /// A TLS client that trusts `cert` (PEM) only, offering `alpn`.
    pub fn tls(cert: &str, alpn: &[u8]) -> anyhow::Result<TlsConnector> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(cert.as_bytes()) {
            roots.add(cert?)?;
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(TlsConnector::from(Arc::new(config)))
    }
}

/// A way to send a subscriber's request: its own HTTP/1 connection, or a share of an
/// HTTP/2 one.
enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

/// Has the kernel choose the source port of `socket` at `connect` (by the whole address
/// pair, as for an unbound socket) rather than at `bind` (a port no socket of that address
/// holds). A `bind` to port 0 searches the ports in use, and in I's connect phase, with
/// 16,667 sockets per address, a profile of a load worker had 95 % of its CPU in that
/// search (`inet_bind2_bucket_match_addr_any`): the worker's threads were held in
/// `bind`, the requests of connections already open went out late, and the server's 10 s
/// header timeout closed 2–3 % of them.
fn bind_address_no_port(socket: &TcpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket, and a pointer to an int with its size, as the option takes.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            std::ptr::from_ref(&on).cast(),
            std::mem::size_of_val(&on) as libc::socklen_t,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Sender {
    /// A new connection to `addr` over `transport` (for HTTP/2, the one its subscribers
    /// share), from the address `from` if given.
    async fn connect(
        addr: SocketAddr,
        from: Option<IpAddr>,
        transport: &Transport,
    ) -> anyhow::Result<Self> {
        let stream = match from {
            Some(ip) => {
                let socket = TcpSocket::new_v4()?;
                bind_address_no_port(&socket)?;
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(addr).await?
            }
            None => TcpStream::connect(addr).await?,
        };
        stream.set_nodelay(true)?;
        let name = || ServerName::try_from("localhost").expect("a valid name");
        Ok(match transport {
            Transport::Plain => {
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(conn);
                Self::H1(sender)
            }
            Transport::Tls(tls) => {
                let stream = tls.connect(name(), stream).await?;
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(conn);
                Self::H1(sender)
            }
            Transport::H2 { tls, .. } => {
                let stream = tls.connect(name(), stream).await?;
                let (sender, conn) = hyper::client::conn::http2::handshake(
                    TokioExecutor::new(),
                    TokioIo::new(stream),
                )
                .await?;
                tokio::spawn(conn);
                Self::H2(sender)
            }
        })
    }

    async fn send(
        &mut self,
        request: hyper::Request<Empty<Bytes>>,
    ) -> hyper::Result<hyper::Response<hyper::body::Incoming>> {
        match self {
            Self::H1(sender) => sender.send_request(request).await,
            Self::H2(sender) => sender.send_request(request).await,
        }
    }
}

/// Opens `n` connections to `addr`, at most 256 handshakes at a time, and returns once each
/// has connected or failed (or `limit` passed).
pub async fn open(
    addr: SocketAddr,
    n: usize,
    subscribe: Subscribe,
    latency: LatencyFrom,
    stats: Arc<Stats>,
    limit: Duration,
) -> Connections {
    open_over(addr, &Transport::Plain, n, subscribe, latency, stats, limit).await
}

/// [`open`] over `transport`.
pub async fn open_over(
    addr: SocketAddr,
    transport: &Transport,
    n: usize,
    subscribe: Subscribe,
    latency: LatencyFrom,
    stats: Arc<Stats>,
    limit: Duration,
) -> Connections {
    // HTTP/2: the connections first, each shared by its subscribers.
    let mut shared = Vec::new();
    if let Transport::H2 { per_connection, .. } = transport {
        for _ in 0..n.div_ceil(*per_connection) {
            match Sender::connect(addr, subscribe.from, transport).await {
                Ok(Sender::H2(sender)) => shared.push(sender),
                Ok(Sender::H1(_)) => unreachable!("an HTTP/2 transport makes HTTP/2 connections"),
                Err(err) => eprintln!("bench: an HTTP/2 connection failed: {err:#}"),
            }
        }
    }
    // Counts are shared by every `open` of a run: wait for this call's own `n`.
    let settled = || stats.connected.load(Ordering::Relaxed) + stats.failed.load(Ordering::Relaxed);
    let before = settled();
    let gate = Arc::new(Semaphore::new(256));
    let tasks = (0..n)
        .map(|i| {
            let (gate, subscribe, latency, stats) = (
                gate.clone(),
                subscribe.numbered(i),
                latency.clone(),
                stats.clone(),
            );
            let (transport, share) = (
                transport.clone(),
                shared.get(i % shared.len().max(1)).cloned(),
            );
            tokio::spawn(async move {
                let permit = gate.acquire_owned().await.ok();
                let sender = match share {
                    Some(sender) => Ok(Sender::H2(sender)),
                    None => Sender::connect(addr, subscribe.from, &transport).await,
                };
                let subscribed = match sender {
                    Ok(sender) => {
                        subscriber(addr, sender, &subscribe, &latency, &stats, permit).await
                    }
                    Err(err) => Err(err),
                };
                if let Err(err) = subscribed {
                    if stats.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("bench: a connection failed: {err:#}");
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + limit;
    while settled() < before + n as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Connections(tasks)
}

async fn subscriber(
    addr: SocketAddr,
    mut sender: Sender,
    subscribe: &Subscribe,
    latency: &LatencyFrom,
    stats: &Stats,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> anyhow::Result<()> {
    let mut request = match sender {
        // HTTP/2 names the host in the URI (`:authority`), HTTP/1.1 in a header.
        Sender::H2(_) => hyper::Request::get(format!(
            "https://localhost:{}{}",
            addr.port(),
            subscribe.path
        )),
        Sender::H1(_) => hyper::Request::get(&subscribe.path).header("host", addr.to_string()),
    }
    .header("accept", "text/event-stream");
    if let Some(id) = &subscribe.last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = sender.send(request.body(Empty::<Bytes>::new())?).await?;
    anyhow::ensure!(
        response.status().is_success(),
        "status {}",
        response.status()
    );
    stats.connected.fetch_add(1, Ordering::Relaxed);
    drop(permit);
    let mut events = BodyDataStream::new(response.into_body()).eventsource();
    let (mut messages, mut seen) = (0u64, 0u64);
    let mut ticks = TickCount::default();
    while let Some(event) = events.next().await {
        let event = event?;
        if event.event == "heartbeat" || event.event == "reset" {
            continue;
        }
        // Every event is counted; the latency of one in LATENCY_SAMPLE is measured, which
        // keeps the load generator's own CPU use (parsing timestamps and JSON) low.
        let sampled = seen.is_multiple_of(LATENCY_SAMPLE);
        seen += 1;
        let measure = || {
            sampled
                .then(|| latency.of(&event.event, &event.data))
                .flatten()
        };
        if let (Some(every), "time") = (subscribe.ticks_every, event.event.as_str()) {
            stats.record(&stats.ticks, measure);
            if stats.counting.load(Ordering::Relaxed) {
                let at = chrono::DateTime::parse_from_rfc3339(event.data.trim())?;
                ticks.got(at.into(), every, &stats.ticks_missed);
            }
            continue;
        }
        stats.record(&stats.events, measure);
        messages += 1;
        if subscribe.until == Some(messages) {
            stats.done.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
    }
    Ok(())
}

/// One connection's clock ticks while counting, for [`Stats::ticks_missed`]: a tick is
/// missing when the timestamps span more intervals than ticks arrived. Counting each gap
/// between consecutive ticks instead (rounded to intervals) took a tick sent late by more
/// than half an interval, and the next one on time, for a tick missed: in I that was one
/// tick for each subscriber per run, none of them lost.
#[derive(Default)]
struct TickCount {
    first: Option<chrono::DateTime<chrono::Utc>>,
    got: u64,
    /// How many of this connection's ticks are counted as missed now.
    missed: u64,
}

impl TickCount {
    /// Notes a tick stamped `at` of a clock that ticks `every`, and moves `total` by the
    /// change in this connection's missed ticks (a late tick's count is taken back once the
    /// next one shows the clock on time).
    fn got(&mut self, at: chrono::DateTime<chrono::Utc>, every: Duration, total: &AtomicU64) {
        self.got += 1;
        let first = *self.first.get_or_insert(at);
        let span = (at - first).to_std().unwrap_or_default();
        let expected = (span.as_secs_f64() / every.as_secs_f64()).round() as u64 + 1;
        let missed = expected.saturating_sub(self.got);
        if missed > self.missed {
            total.fetch_add(missed - self.missed, Ordering::Relaxed);
        } else {
            total.fetch_sub(self.missed - missed, Ordering::Relaxed);
        }
        self.missed = missed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ticks at these seconds after the first; how many `TickCount` counts as missed.
    fn missed(at_secs: &[f64]) -> u64 {
        let start = chrono::Utc::now();
        let (mut ticks, total) = (TickCount::default(), AtomicU64::new(0));
        for &at in at_secs {
            let at = start + chrono::Duration::microseconds((at * 1e6) as i64);
            ticks.got(at, Duration::from_secs(1), &total);
        }
        total.load(Ordering::Relaxed)
    }

    #[test]
    fn a_late_tick_is_not_a_missed_one_and_a_skipped_one_is() {
        assert_eq!(missed(&[0.0, 1.0, 2.0, 3.0]), 0);
        assert_eq!(missed(&[0.0, 1.0, 2.6, 3.0, 4.0]), 0, "late, then on time");
        assert_eq!(missed(&[0.0, 1.0, 3.0, 4.0]), 1, "the tick at 2 s skipped");
        assert_eq!(
            missed(&[0.0, 1.0, 3.4, 4.0, 6.0]),
            2,
            "skipped at 2 s and 5 s"
        );
    }
}

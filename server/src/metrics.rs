//! Prometheus metrics: what an operator watches, recorded through the `metrics` crate and
//! rendered by `metrics-exporter-prometheus` at `GET /metrics`.
//!
//! Counters and histograms are recorded where things happen (publish, delivery, replay,
//! refusals, HTTP answers). Figures that are states rather than events (subscribers per
//! stream, the process's memory and open files) are read when Prometheus scrapes
//! ([`record_states`], called by the page's handler, `handlers/metrics_page.rs`). Stream
//! labels are bounded: the [`TOP_STREAMS`] streams with most subscribers get their own
//! series, the rest are summed as `other`. Private streams are never named on a page that
//! anyone may read: without `--metrics-token`, they are summed as `private`.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use common::StreamSummary;
use metrics::{counter, gauge, histogram, Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// What every metric's name starts with.
const PREFIX: &str = "notify_hub_";

/// Metric names, as they appear in `/metrics` (the README explains each).
pub mod names {
    pub const SUBSCRIBERS: &str = "notify_hub_subscribers";
    pub const STREAMS_OPEN: &str = "notify_hub_streams_open";
    pub const TASKS: &str = "notify_hub_tasks";
    pub const REFUSED: &str = "notify_hub_connections_refused_total";
    pub const PUBLISHED: &str = "notify_hub_published_total";
    pub const DELIVERED: &str = "notify_hub_delivered_total";
    pub const REPLAYED: &str = "notify_hub_replayed_total";
    pub const RESETS: &str = "notify_hub_resets_total";
    pub const LAGGED: &str = "notify_hub_lagged_subscribers_total";
    pub const STORE_APPEND: &str = "notify_hub_store_append_seconds";
    pub const STORE_UP: &str = "notify_hub_store_up";
    pub const FIRST_DELIVERY: &str = "notify_hub_publish_to_first_delivery_seconds";
    pub const HTTP_REQUESTS: &str = "notify_hub_http_requests_total";
    // The process's own figures (`notify_hub_process_resident_memory_bytes`,
    // `notify_hub_process_open_fds`, …) are named by `metrics-process`.
}

/// Streams with their own `stream` label; the others are summed as `other`.
pub const TOP_STREAMS: usize = 20;

/// Histogram buckets for latencies, in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.0, 10.0,
];

/// The process-wide recorder (one per process, however many servers a test starts).
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder once; later calls (and other servers in the process) share it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .expect("the buckets are not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder is already installed (by a program embedding the server):
            // nothing reaches ours then, and `/metrics` stays empty.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
            }
            describe();
            handle
        })
        .clone()
}

/// The `# HELP` line of each metric.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        names::SUBSCRIBERS,
        "Subscribers connected now, per stream (top streams, the rest as `other`)."
    );
    describe_gauge!(
        names::STREAMS_OPEN,
        "SSE streams open now (notifications, clock, overview)."
    );
    describe_gauge!(
        names::TASKS,
        "Tasks alive in the server's runtime (connections, subscriptions, followers)."
    );
    describe_counter!(
        names::REFUSED,
        "Connections and streams refused by a limit, by reason."
    );
    describe_counter!(names::PUBLISHED, "Notifications stored.");
    describe_counter!(
        names::DELIVERED,
        "Notifications written to subscribers (one per subscriber)."
    );
    describe_counter!(
        names::REPLAYED,
        "Notifications sent to subscribers catching up (from memory or the store)."
    );
    describe_counter!(
        names::RESETS,
        "Resets sent: a subscriber asked for more than the store keeps."
    );
    describe_counter!(
        names::LAGGED,
        "Subscribers that fell behind their live buffer and caught up from the store."
    );
    describe_histogram!(
        names::STORE_APPEND,
        Unit::Seconds,
        "Time to store one batch of publishes (one disk flush)."
    );
    describe_gauge!(
        names::STORE_UP,
        "1 while the store works (its latest operation succeeded), 0 while it fails."
    );
    describe_histogram!(
        names::FIRST_DELIVERY,
        Unit::Seconds,
        "Time from a publish to its first write to a subscriber."
    );
    describe_counter!(names::HTTP_REQUESTS, "HTTP answers by route and status.");
    PROCESS.describe();
}

/// Handles of the hot-path metrics, made once (after [`install`]) instead of looked up on
/// every event.
struct Hot {
    delivered: Counter,
    replayed: Counter,
    first_delivery: Histogram,
}

static HOT: LazyLock<Hot> = LazyLock::new(|| {
    install();
    Hot {
        delivered: counter!(names::DELIVERED),
        replayed: counter!(names::REPLAYED),
        first_delivery: histogram!(names::FIRST_DELIVERY),
    }
});

/// A notification written to a subscriber.
pub fn delivered() {
    HOT.delivered.increment(1);
}

/// A notification sent from the store to a subscriber catching up.
pub fn replayed() {
    HOT.replayed.increment(1);
}

/// The time from a publish to its first write to a subscriber.
pub fn first_delivery(latency: Duration) {
    HOT.first_delivery.record(latency);
}

/// `n` notifications stored in one append that took `took`.
pub fn stored(n: usize, took: Duration) {
    counter!(names::PUBLISHED).increment(n as u64);
    histogram!(names::STORE_APPEND).record(took);
}

/// Whether the store works, as its latest operation found.
pub fn store_up(up: bool) {
    gauge!(names::STORE_UP).set(if up { 1.0 } else { 0.0 });
}

/// A `reset` sent to a subscriber.
pub fn reset() {
    counter!(names::RESETS).increment(1);
}

/// A subscriber fell behind its live buffer and goes back to catching up.
pub fn lagged() {
    counter!(names::LAGGED).increment(1);
}

/// A stream refused by a limit (`reason`: `server_full`, `client_limit`), or a connection
/// closed at accept by the cap on open connections (`open_connections`).
pub fn refused(reason: &'static str) {
    counter!(names::REFUSED, "reason" => reason).increment(1);
}

/// An answer with `status` to a request on `route` (the route pattern, so that labels
/// stay bounded).
pub fn answered(route: String, status: StatusCode) {
    counter!(
        names::HTTP_REQUESTS,
        "route" => route,
        "status" => status.as_u16().to_string()
    )
    .increment(1);
}

/// The `stream` labels set at the last scrape, so that streams gone since drop to 0.
static LABELLED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// The process figures (memory, open files, CPU, threads), read from the OS at each scrape
/// by `metrics-process` under our prefix.
static PROCESS: LazyLock<metrics_process::Collector> =
    LazyLock::new(|| metrics_process::Collector::new(PREFIX));

/// Sets the gauges that describe the present: open streams, live tasks (a leak of them
/// shows in a long run before memory does), subscribers per stream
/// (`streams` as the hub's overview gives them; `None` when the store could not say, which
/// leaves those gauges as they were), and the process's own figures. The streams for which
/// `hidden` is true (private streams, on a page anyone may read) are summed as `private`.
pub fn record_states(
    streams_open: usize,
    streams: Option<&[StreamSummary]>,
    hidden: impl Fn(&str) -> bool,
) {
    gauge!(names::STREAMS_OPEN).set(streams_open as f64);
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        gauge!(names::TASKS).set(runtime.metrics().num_alive_tasks() as f64);
    }
    if let Some(streams) = streams {
        record_subscribers(streams, hidden);
    }
    PROCESS.collect();
}

/// The subscriber gauges: the [`TOP_STREAMS`] busiest streams by name, the rest as
/// `other`, the `hidden` ones as `private`, and 0 for streams labelled at the last scrape
/// that have none now.
fn record_subscribers(streams: &[StreamSummary], hidden: impl Fn(&str) -> bool) {
    let (hidden, shown): (Vec<&StreamSummary>, Vec<&StreamSummary>) =
        streams.iter().partition(|s| hidden(&s.name));
    let private: u64 = hidden.iter().map(|s| s.subscribers).sum();
    let mut by_subscribers: Vec<(&str, u64)> = shown
        .iter()
        .filter(|s| s.subscribers > 0)
        .map(|s| (s.name.as_str(), s.subscribers))
        .collect();
    by_subscribers.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let other: u64 = by_subscribers.iter().skip(TOP_STREAMS).map(|s| s.1).sum();
    by_subscribers.truncate(TOP_STREAMS);
    let mut labelled = LABELLED.lock().unwrap_or_else(PoisonError::into_inner);
    let now: HashSet<String> = by_subscribers.iter().map(|s| s.0.to_owned()).collect();
    for gone in labelled
        .iter()
        .flatten()
        .filter(|name| !now.contains(*name))
    {
        gauge!(names::SUBSCRIBERS, "stream" => gone.clone()).set(0.0);
    }
    for (name, subscribers) in by_subscribers {
        gauge!(names::SUBSCRIBERS, "stream" => name.to_owned()).set(subscribers as f64);
    }
    gauge!(names::SUBSCRIBERS, "stream" => "other").set(other as f64);
    gauge!(names::SUBSCRIBERS, "stream" => "private").set(private as f64);
    *labelled = Some(now);
}

/// Everything recorded, in the Prometheus text format.
pub fn render() -> String {
    let handle = install();
    handle.run_upkeep();
    handle.render()
}

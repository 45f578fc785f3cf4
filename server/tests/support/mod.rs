//! A real server on a free port for the integration tests, and helpers to read its streams.

#![allow(dead_code)] // each test file uses a different part of this module

pub mod https;

use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures::{Stream, StreamExt};
use server::config::Config;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A server started with `server::serve::serve` on 127.0.0.1 port 0.
pub struct TestServer {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    pub async fn start(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve::serve(listener, config, async {
            stopped.await.ok();
        }));
        Self {
            url,
            stop: Some(stop),
            task,
        }
    }

    /// Sends the shutdown signal and waits (at most 10 s) for the server to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.take().unwrap().send(()).ok();
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("server did not stop within 10 s")
            .unwrap()
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

/// A config for tests: assets in a folder that does not exist, a fresh SQLite file.
pub fn config() -> Config {
    Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        assets: "/nonexistent-notify-hub-assets".into(),
        db: temp_db(),
        ..Config::default()
    }
}

/// [`config`] with the store in the test run's shared Redis (see `e2e::redis`), under a
/// key prefix of its own.
pub fn redis_config() -> Config {
    Config {
        redis: Some(e2e::redis::shared_url()),
        redis_prefix: e2e::redis::unique_prefix(),
        ..config()
    }
}

/// Runs each named hub test once per store: `both_stores!(name)` makes the tests
/// `name::sqlite` and `name::redis`, which call `async fn name(base: Config)` with
/// [`config`] and [`redis_config`]. One suite, not a copy per store.
#[allow(unused_macros)]
macro_rules! both_stores {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[tokio::test]
            async fn sqlite() {
                super::$test(super::support::config()).await
            }

            #[tokio::test]
            async fn redis() {
                super::$test(super::support::redis_config()).await
            }
        }
    )*};
}
#[allow(unused_imports)]
pub(crate) use both_stores;

/// A path for a new SQLite file in a temporary folder that outlives the test.
pub fn temp_db() -> std::path::PathBuf {
    tempfile::tempdir().unwrap().keep().join("hub.db")
}

/// The SSE events of a response, parsed with `eventsource-stream`.
pub fn events(response: reqwest::Response) -> impl Stream<Item = Event> + Unpin {
    Box::pin(
        response
            .bytes_stream()
            .eventsource()
            .map(|event| event.unwrap_or_else(|err| panic!("the SSE stream failed: {err:?}"))),
    )
}

/// All events of a finite stream, failing after `limit`.
pub async fn collect_all(response: reqwest::Response, limit: Duration) -> Vec<Event> {
    tokio::time::timeout(limit, events(response).collect::<Vec<_>>())
        .await
        .expect("the stream did not end in time")
}

/// Publishes through the HTTP API and returns what the server stored.
pub async fn publish(
    server: &TestServer,
    stream: &str,
    title: &str,
    body: &str,
) -> common::Notification {
    let response = reqwest::Client::new()
        .post(server.at("/api/notifications"))
        .json(&serde_json::json!({ "stream": stream, "title": title, "body": body }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    response.json().await.unwrap()
}

/// Opens `/events?stream=` with an optional `Last-Event-ID` header.
pub async fn subscribe(
    server: &TestServer,
    stream: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(server.at(&format!("/events?stream={stream}")));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    response
}

/// The next notification (unnamed event) of `events`, skipping control events.
pub async fn next_notification(
    events: &mut (impl Stream<Item = Event> + Unpin),
) -> common::Notification {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("no notification within 10 s")
            .expect("the stream ended");
        if event.event == "message" {
            let notification: common::Notification = serde_json::from_str(&event.data).unwrap();
            assert_eq!(
                notification.id, event.id,
                "the SSE id is the notification's id"
            );
            return notification;
        }
    }
}

/// The next event of any kind.
pub async fn next_event(events: &mut (impl Stream<Item = Event> + Unpin)) -> Event {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("no event within 10 s")
        .expect("the stream ended")
}

/// The value of the metric `series` (a name, with its labels if any) on `server`'s
/// `/metrics`; `None` when it is not there.
pub async fn metric(server: &TestServer, series: &str) -> Option<f64> {
    metric_at(&server.url, series).await
}

/// [`metric`] of the server at `url`.
pub async fn metric_at(url: &str, series: &str) -> Option<f64> {
    metric_with(&reqwest::Client::new(), url, series).await
}

/// [`metric_at`], asked with `client` (one that trusts an HTTPS server's certificate).
pub async fn metric_with(client: &reqwest::Client, url: &str, series: &str) -> Option<f64> {
    let page = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

/// The resident memory of process `pid`, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line["VmRSS:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

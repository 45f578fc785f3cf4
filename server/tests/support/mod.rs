//! A real server on a free port for the integration tests, and helpers to read its streams.

#![allow(dead_code)] // each test file uses a different part of this module

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
            .map(|event| event.expect("malformed SSE")),
    )
}

/// All events of a finite stream, failing after `limit`.
pub async fn collect_all(response: reqwest::Response, limit: Duration) -> Vec<Event> {
    tokio::time::timeout(limit, events(response).collect::<Vec<_>>())
        .await
        .expect("the stream did not end in time")
}

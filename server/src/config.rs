//! Runtime settings of a server instance, independent of how they were given (CLI, env, tests).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::store::Retention;

/// Everything [`crate::routes::app`] and [`crate::serve::run`] need to know.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    pub addr: SocketAddr,
    /// Folder with the built web app (`trunk build --release` writes `dist/`).
    pub assets: PathBuf,
    /// Interval of SSE keep-alive comments, which stop proxies from closing idle streams.
    pub keep_alive: Duration,
    /// Reconnection delay suggested to browsers by the `retry:` field.
    pub retry: Duration,
    /// How long open streams get to finish after a shutdown signal before the process exits.
    pub shutdown_grace: Duration,
    /// The SQLite database file (created with its folder on first run).
    pub db: PathBuf,
    /// What the store keeps.
    pub retention: Retention,
    /// How often retention is applied.
    pub prune_every: Duration,
    /// Interval of `heartbeat` events on notification streams.
    pub heartbeat: Duration,
    /// Live entries a subscriber may fall behind before it catches up from the store.
    pub subscriber_buffer: usize,
    /// Notification streams are closed after this long (clients resume where they were),
    /// which spreads long-lived connections over instances; `None` keeps them open.
    pub max_stream_age: Option<Duration>,
    /// Origins allowed to call the API from a browser; empty means any (`*`).
    pub cors_origins: Vec<String>,
    /// Publish the seed's counter to the stream `counter` ten times a second.
    pub demo: bool,
}

/// The stream the demo counter publishes to.
pub const DEMO_STREAM: &str = "counter";

/// How many demo counter entries are kept (a minute's worth).
pub const DEMO_KEEP: u64 = 600;

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            assets: PathBuf::from("dist"),
            keep_alive: Duration::from_secs(15),
            retry: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(5),
            db: PathBuf::from("data/notify-hub.db"),
            retention: Retention {
                max_per_stream: Some(10_000),
                max_age: Some(Duration::from_secs(7 * 24 * 3600)),
                per_stream: vec![(DEMO_STREAM.to_owned(), DEMO_KEEP)],
            },
            prune_every: Duration::from_secs(10),
            heartbeat: Duration::from_secs(15),
            subscriber_buffer: 1024,
            max_stream_age: None,
            cors_origins: Vec::new(),
            demo: false,
        }
    }
}

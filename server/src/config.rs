//! Runtime settings of a server instance, independent of how they were given (CLI, env, tests).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            assets: PathBuf::from("dist"),
            keep_alive: Duration::from_secs(15),
            retry: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

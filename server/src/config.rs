//! Runtime settings of a server instance, independent of how they were given (CLI, env,
//! tests). The default of every setting is written once, in [`defaults`]: both
//! [`Config::default`] and the command line's flags take it from there.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use axum::http::{HeaderValue, Uri};

use crate::limits::MaxOpenConnections;
use crate::store::Retention;
use crate::tls::TlsFiles;

/// The default of each setting, in the unit its command-line flag uses.
pub mod defaults {
    pub const ADDR: &str = "127.0.0.1:8080";
    pub const ASSETS: &str = "dist";
    pub const DB: &str = "data/notify-hub.db";
    pub const KEEP_ALIVE_SECS: u64 = 15;
    pub const RETRY_MS: u64 = 2_000;
    pub const SHUTDOWN_GRACE_SECS: u64 = 5;
    pub const RETAIN_COUNT: u64 = 10_000;
    pub const RETAIN_HOURS: u64 = 168;
    pub const HEARTBEAT_SECS: u64 = 15;
    pub const MAX_STREAM_SECS: u64 = 0;
    pub const SUBSCRIBER_BUFFER: u64 = 1_024;
    pub const PRUNE_EVERY_SECS: u64 = 10;
    pub const HEADER_TIMEOUT_SECS: u64 = 10;
    pub const REQUEST_TIMEOUT_SECS: u64 = 30;
    pub const SEND_TIMEOUT_SECS: u64 = 30;
    pub const MAX_CONNECTIONS: u64 = 0;
    pub const MAX_CONNECTIONS_PER_IP: u64 = 0;
    pub const PUBLISH_RATE: u32 = 1_000;
    pub const PUBLISH_BURST: u32 = 2_000;
    pub const MAX_DB_MB: u64 = 0;
    pub const REDIS_PREFIX: &str = "notify-hub";
}

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
    /// The SQLite database file (created with its folder on first run); unused with Redis.
    pub db: PathBuf,
    /// Keep notifications in Redis Streams at this URL instead of SQLite, shared with
    /// every instance that uses the same Redis and prefix.
    pub redis: Option<String>,
    /// What this hub's Redis keys start with (several hubs can share one Redis).
    pub redis_prefix: String,
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
    pub cors_origins: Vec<HeaderValue>,
    /// Publish the seed's counter to the stream `counter` ten times a second.
    pub demo: bool,
    /// How long a client may take to send its request headers (also the idle time allowed
    /// before the next request on a kept-alive connection); slower connections are closed.
    pub header_timeout: Duration,
    /// How long a request may take until its response starts (reading its body included);
    /// then `408`. Streams, once started, are not cut by it.
    pub request_timeout: Duration,
    /// How long a connection's writes may make no progress (a client gone without a word,
    /// a half-open link, a reader that stopped reading) before it is closed and its
    /// streams freed: both the socket's `TCP_USER_TIMEOUT` and a deadline on each write.
    pub send_timeout: Duration,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this certificate and key instead of HTTP.
    pub tls: Option<TlsFiles>,
    /// Most SSE streams open at once (`None`: no limit); more get `503`.
    pub max_connections: Option<usize>,
    /// Most connections of any kind open at once; more are closed at accept.
    pub max_open_connections: MaxOpenConnections,
    /// Most SSE streams open at once from one client IP (`None`: no limit); more get `429`.
    pub max_connections_per_ip: Option<usize>,
    /// Take the client IP from `X-Forwarded-For` (only behind a reverse proxy that sets it).
    pub trust_proxy: bool,
    /// Publishes per second allowed per client (`None`: no limit), and how many at once.
    pub publish_rate: Option<NonZeroU32>,
    pub publish_burst: NonZeroU32,
    /// When set, `GET /metrics` needs it as `Authorization: Bearer`.
    pub metrics_token: Option<String>,
    /// Largest size of the database file (`None`: as large as the disk allows). A full
    /// store refuses publishes with `503` until retention frees space.
    pub max_db_bytes: Option<u64>,
    /// HS256 secret tokens are checked with (see [`crate::auth`]).
    pub jwt_secret: Option<String>,
    /// PEM public key (RSA or EC P-256) tokens are checked with.
    pub jwt_public_key: Option<PathBuf>,
    /// The `aud` claim tokens must carry (`None`: `aud` is not checked).
    pub jwt_audience: Option<String>,
    /// Patterns of the streams that need a `subscribe` claim to be read.
    pub private_streams: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: defaults::ADDR.parse().expect("the default address parses"),
            assets: PathBuf::from(defaults::ASSETS),
            keep_alive: Duration::from_secs(defaults::KEEP_ALIVE_SECS),
            retry: Duration::from_millis(defaults::RETRY_MS),
            shutdown_grace: Duration::from_secs(defaults::SHUTDOWN_GRACE_SECS),
            db: PathBuf::from(defaults::DB),
            redis: None,
            redis_prefix: defaults::REDIS_PREFIX.to_owned(),
            retention: retention(defaults::RETAIN_COUNT, defaults::RETAIN_HOURS),
            prune_every: Duration::from_secs(defaults::PRUNE_EVERY_SECS),
            heartbeat: Duration::from_secs(defaults::HEARTBEAT_SECS),
            subscriber_buffer: defaults::SUBSCRIBER_BUFFER as usize,
            max_stream_age: seconds_unless_zero(defaults::MAX_STREAM_SECS),
            cors_origins: Vec::new(),
            demo: false,
            header_timeout: Duration::from_secs(defaults::HEADER_TIMEOUT_SECS),
            request_timeout: Duration::from_secs(defaults::REQUEST_TIMEOUT_SECS),
            send_timeout: Duration::from_secs(defaults::SEND_TIMEOUT_SECS),
            tls: None,
            max_connections: count_unless_zero(defaults::MAX_CONNECTIONS),
            max_connections_per_ip: count_unless_zero(defaults::MAX_CONNECTIONS_PER_IP),
            max_open_connections: MaxOpenConnections::FromOpenFileLimit,
            trust_proxy: false,
            publish_rate: NonZeroU32::new(defaults::PUBLISH_RATE),
            publish_burst: NonZeroU32::new(defaults::PUBLISH_BURST)
                .expect("the default burst is not 0"),
            metrics_token: None,
            max_db_bytes: count_unless_zero(defaults::MAX_DB_MB).map(|mb| mb as u64 * MIB),
            jwt_secret: None,
            jwt_public_key: None,
            jwt_audience: None,
            private_streams: Vec::new(),
        }
    }
}

/// The flags' convention for limits: 0 turns one off (`None`).
pub fn unless_zero(value: u64) -> Option<u64> {
    (value > 0).then_some(value)
}

/// A limit in seconds, by [`unless_zero`].
pub fn seconds_unless_zero(secs: u64) -> Option<Duration> {
    unless_zero(secs).map(Duration::from_secs)
}

/// A count limit, by [`unless_zero`].
pub fn count_unless_zero(count: u64) -> Option<usize> {
    unless_zero(count).map(|count| count as usize)
}

/// Bytes in a mebibyte.
pub const MIB: u64 = 1024 * 1024;

/// The retention of the flags `--retain-count` and `--retain-hours`, by [`unless_zero`].
pub fn retention(count: u64, hours: u64) -> Retention {
    Retention::new(
        unless_zero(count),
        unless_zero(hours).map(|hours| Duration::from_secs(hours.saturating_mul(3600))),
    )
}

/// An origin as browsers send it (`https://app.example.com`, `http://localhost:3000`):
/// a scheme and a host, with no path, query or trailing slash.
pub fn cors_origin(text: &str) -> Result<HeaderValue, String> {
    let refuse = || {
        format!("`{text}` is not an origin: expected scheme://host[:port], e.g. https://app.example.com")
    };
    let uri: Uri = text.parse().map_err(|_| refuse())?;
    let well_formed = matches!(uri.scheme_str(), Some("http" | "https"))
        && uri.authority().is_some_and(|a| !a.host().is_empty())
        && uri.path() == "/"
        && uri.query().is_none()
        && !text.ends_with('/');
    if !well_formed {
        return Err(refuse());
    }
    HeaderValue::from_str(text).map_err(|_| refuse())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked() {
        for good in [
            "https://app.example.com",
            "http://localhost:3000",
            "http://127.0.0.1:8080",
        ] {
            assert_eq!(cors_origin(good).unwrap(), good);
        }
        for bad in [
            "",
            "app.example.com",
            "https://",
            "https://app.example.com/",
            "https://a.example/path",
            "ftp://a.example",
            "https://a b",
            "*",
        ] {
            assert!(cors_origin(bad).is_err(), "{bad:?}");
        }
    }
}

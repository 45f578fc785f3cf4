//! The plumbing under the Redis store: one connection that reconnects by itself for
//! every call but the blocking reads, a small pool of connections for those, a deadline on
//! every call, and the health the calls (and a ping every second) report.
//!
//! Every call has a deadline: while Redis is away, publishes fail fast (`503`) instead of
//! hanging, and [`StoreHealth`] says why until a call succeeds again. A background ping
//! keeps that state current when nothing else talks to Redis. A call that runs out of time
//! puts a new connection in place of the one it used (see [`Current`]).

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::io::tcp::socket2::TcpKeepalive;
use redis::io::tcp::TcpSettings;
use redis::{AsyncConnectionConfig, Client, Cmd, FromRedisValue, IntoConnectionInfo};

use super::{Error, StoreHealth};

/// The longest a call to Redis may take before it counts as failed.
pub const DEADLINE: Duration = Duration::from_secs(3);
/// How long a silent peer is given before its connection is dropped (see [`tcp_settings`]).
const DEAD_PEER: Duration = Duration::from_secs(10);
/// How often the health of an idle connection is checked.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Blocking connections kept for reuse by stream followers.
const IDLE_BLOCKING: usize = 16;

/// Connections to one Redis, with deadlines and health.
pub struct RedisConnection {
    client: Client,
    /// Every call but the blocking reads; reconnects by itself.
    conn: Arc<Current>,
    /// Connections for `XREAD BLOCK`, idle between two reads.
    blocking: Mutex<Vec<MultiplexedConnection>>,
    health: Arc<StoreHealth>,
    /// Why Redis refuses writes though it answers (see [`RedisConnection::write`]).
    refusal: StoreHealth,
}

impl RedisConnection {
    /// Connects to the Redis at `url`. Fails when Redis cannot be reached or is too old, so
    /// that a wrong URL is found at start rather than at the first publish.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        // Messages show the URL without its password.
        let shown = redacted(url);
        let info = url
            .into_connection_info()
            .with_context(|| format!("`{shown}` is not a Redis URL"))?;
        let client = Client::open(info.set_tcp_settings(tcp_settings()))?;
        // One quick retry per reconnection: calls wait for a reconnection in progress, so
        // a long series of retries would hold publishes for its whole length while Redis
        // is away. A call after a failed reconnection starts the next one.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(DEADLINE))
            .set_response_timeout(Some(DEADLINE))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200));
        let mut conn = tokio::time::timeout(
            DEADLINE,
            ConnectionManager::new_with_config(client.clone(), config.clone()),
        )
        .await
        .map_err(|_| anyhow!("Redis at {shown} did not answer within {DEADLINE:?}"))?
        .with_context(|| format!("cannot connect to Redis at {shown}"))?;
        let version: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .context("Redis did not answer INFO")?;
        check_version(&version)?;
        warn_if_evicting(&mut conn).await;
        let health = Arc::new(StoreHealth::default());
        let conn = Arc::new(Current {
            client: client.clone(),
            config,
            conn: Mutex::new((conn, Instant::now())),
        });
        tokio::spawn(ping(Arc::downgrade(&health), conn.clone()));
        Ok(Self {
            client,
            conn,
            blocking: Mutex::default(),
            health,
            refusal: StoreHealth::default(),
        })
    }

    /// Runs one call against Redis with [`DEADLINE`], recording the outcome in `health`.
    pub async fn call<T>(
        &self,
        what: &str,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Error> {
        self.call_within(what, DEADLINE, call).await
    }

    /// [`RedisConnection::call`] with a deadline of `limit`.
    pub async fn call_within<T>(
        &self,
        what: &str,
        limit: Duration,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Error> {
        let timed = tokio::time::timeout(limit, call).await;
        self.conn.renew_after(&timed);
        self.health.track(described(what, limit, timed))
    }

    /// [`RedisConnection::call`] for an append. Redis can be reachable and still refuse writes
    /// (out of memory, a read-only replica after a failover, a failed disk save): such a
    /// refusal is kept in `refusal` until an append succeeds, so that the pings, which
    /// still succeed, do not hide it every second.
    pub async fn write<T>(
        &self,
        what: &str,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Error> {
        let timed = tokio::time::timeout(DEADLINE, call).await;
        if self.conn.renew_after(&timed) {
            // The append may have reached Redis, its answer not: the publisher must not
            // take the refusal for "not stored".
            return self.health.track(Err(anyhow!(
                "Redis did not answer within {DEADLINE:?}; the notification may have been \
                 stored all the same"
            )));
        }
        match &timed {
            Ok(Err(err)) if is_refusal(err) => {
                return self
                    .refusal
                    .track(Err(anyhow!("Redis refused to {what}: {err}")));
            }
            Ok(Ok(_)) => {
                let _ = self.refusal.track(Ok(()));
            }
            _ => {}
        }
        self.health.track(described(what, DEADLINE, timed))
    }

    /// Runs `command` with [`RedisConnection::call`].
    pub async fn query<T: FromRedisValue>(&self, what: &str, command: Cmd) -> Result<T, Error> {
        let mut conn = self.conn.get();
        self.call(what, async move { command.query_async(&mut conn).await })
            .await
    }

    /// The connection for every call but the blocking reads (a handle: clones are cheap).
    pub fn manager(&self) -> ConnectionManager {
        self.conn.get()
    }

    /// A connection for one blocking read: an idle one, or a new one.
    pub async fn blocking_connection(&self) -> Result<MultiplexedConnection, Error> {
        let idle = self
            .blocking
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        if let Some(conn) = idle {
            return Ok(conn);
        }
        // No response timeout of its own: the read's deadline is set around it.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(DEADLINE))
            .set_response_timeout(None);
        self.call(
            "open a connection",
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
    }

    /// Puts a connection that worked back for the next blocking read.
    pub fn put_back(&self, conn: MultiplexedConnection) {
        let mut idle = self.blocking.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_BLOCKING {
            idle.push(conn);
        }
    }

    /// Drops the idle blocking connections: after a failed read, they went through the
    /// same outage.
    pub fn drop_blocking(&self) {
        self.blocking
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Why Redis cannot take publishes right now, or `None` while it works.
    pub fn problem(&self) -> Option<String> {
        self.refusal.problem().or_else(|| self.health.problem())
    }
}

/// The connection manager for every call but the blocking reads. redis-rs makes a new
/// connection by itself only when the old one reports an error; a connection that went
/// half-open (a NAT or load balancer that forgot it, a Redis host frozen) reports none and
/// answers nothing, ever: every call then ran into its deadline for as long as the process
/// lived (found by the half-open test in `server/tests/redis_links.rs`). So a call that
/// runs out of time replaces the manager with a new one, which connects afresh.
struct Current {
    client: Client,
    config: ConnectionManagerConfig,
    /// The manager, and when it was made.
    conn: Mutex<(ConnectionManager, Instant)>,
}

impl Current {
    /// The manager to use now (a handle: clones are cheap).
    fn get(&self) -> ConnectionManager {
        self.conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .clone()
    }

    /// Replaces the manager if `timed` ran out of time, or Redis's answer did; `true` if
    /// it did. Calls that time out together (all those on the dead connection) replace it
    /// once: a manager younger than [`DEADLINE`] is kept.
    fn renew_after<T>(
        &self,
        timed: &Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> bool {
        let timed_out = match timed {
            Err(_) => true,
            Ok(Err(err)) => err.is_timeout(),
            Ok(Ok(_)) => false,
        };
        if !timed_out {
            return false;
        }
        let mut current = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if current.1.elapsed() >= DEADLINE {
            match ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
            {
                Ok(fresh) => {
                    tracing::debug!("a call to Redis timed out; connecting afresh");
                    *current = (fresh, Instant::now());
                }
                Err(err) => tracing::warn!("cannot make a new Redis connection: {err}"),
            }
        }
        true
    }
}

/// `url` without its credentials, for messages and logs: the password in
/// `redis://user:password@host` and the `pass` of `redis+unix:///path?pass=…`. A URL that
/// does not parse loses everything up to its last `@`.
pub fn redacted(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return match url.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => url.to_owned(),
        };
    };
    if parsed.password().is_some() && parsed.set_password(Some("***")).is_err() {
        return "***".to_owned();
    }
    if parsed.query_pairs().any(|(key, _)| key == "pass") {
        let kept: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if key == "pass" { "***".into() } else { value };
                (key.into_owned(), value.into_owned())
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    parsed.to_string()
}

/// Sockets that notice a dead peer: keepalive probes on idle connections (a reader
/// blocked in `XREAD` sends nothing), and a connection whose sent data stays
/// unacknowledged for [`DEAD_PEER`] is given up (`TCP_USER_TIMEOUT`). Without them, a
/// Redis host that vanishes without a reset (a crashed machine, a failover to another
/// address, a dropped NAT entry) holds every call until the kernel's retransmissions end,
/// some fifteen minutes; with them, the connection fails and is made again.
fn tcp_settings() -> TcpSettings {
    let keepalive = TcpKeepalive::new()
        .with_time(DEAD_PEER / 2)
        .with_interval(DEAD_PEER / 4);
    TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive)
        .set_user_timeout(DEAD_PEER)
}

/// Warns when Redis may evict keys under memory pressure: an evicted retention mark
/// (`<prefix>:trimmed`) would let a replay skip a gap without a reset. Managed Redis
/// services that disable `CONFIG` are not checked.
async fn warn_if_evicting(conn: &mut ConnectionManager) {
    let policy: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(conn)
        .await;
    if let Ok([_, policy]) = policy.as_deref() {
        if policy != "noeviction" {
            tracing::warn!(
                "Redis evicts keys when full (maxmemory-policy {policy}): an evicted key \
                 loses notifications without telling subscribers; set it to noeviction"
            );
        }
    }
}

/// A call's outcome under a deadline of `limit`, with an error that says what failed.
fn described<T>(
    what: &str,
    limit: Duration,
    timed: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
) -> Result<T, Error> {
    match timed {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(anyhow!("Redis failed to {what}: {err}")),
        Err(_) => Err(anyhow!("Redis did not {what} within {limit:?}")),
    }
}

/// Whether `err` is Redis answering "no" rather than Redis out of reach.
fn is_refusal(err: &redis::RedisError) -> bool {
    !(err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal())
}

/// Refuses a Redis older than 6.2, which lacks `XTRIM MINID` and exclusive ranges.
fn check_version(info: &str) -> anyhow::Result<()> {
    let version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(str::trim)
        .unwrap_or("unknown");
    let mut parts = version.split('.').map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < (6, 2) {
        anyhow::bail!("Redis {version} is too old: notify-hub needs Redis 6.2 or newer");
    }
    Ok(())
}

/// Pings Redis every [`PING_EVERY`] while the store (its `health`) exists, so that
/// `/healthz` and `/metrics` notice Redis going and coming back even when idle.
async fn ping(health: Weak<StoreHealth>, conn: Arc<Current>) {
    let mut every = tokio::time::interval(PING_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(health) = health.upgrade() else {
            return;
        };
        let ping = redis::cmd("PING");
        let mut manager = conn.get();
        let timed = tokio::time::timeout(DEADLINE, ping.query_async::<String>(&mut manager)).await;
        conn.renew_after(&timed);
        let _ = health.track(described("answer a ping", DEADLINE, timed));
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn urls_lose_their_credentials() {
        for (url, shown) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            (
                "redis://:s3cret@10.0.0.5:6379/2",
                "redis://:***@10.0.0.5:6379/2",
            ),
            ("rediss://app:s3cret@cache", "rediss://app:***@cache"),
            (
                "redis+unix:///run/redis.sock?db=1&pass=s3cret",
                "redis+unix:///run/redis.sock?db=1&pass=***",
            ),
            ("redis://:s3cret@127.0.0.1:99999", "***@127.0.0.1:99999"),
        ] {
            assert_eq!(redacted(url), shown, "{url}");
        }
    }
}

//! The shared store: Redis Streams, for several instances serving the same streams.
//!
//! Each notification stream is a Redis Stream under `<prefix>:stream:<name>`, and the set
//! `<prefix>:streams` names them all. Ids are Redis's own (`1732371600000-0`): Redis
//! issues them in order per stream, whichever instance appends.
//!
//! - **Append**: one Lua script per batch (atomic, one round trip) `XADD`s every draft
//!   and trims each stream to its count cap; the publisher is answered once Redis has
//!   acknowledged it (so durability is Redis's: see the README on `appendfsync`).
//! - **Retention** trims exactly (`MAXLEN`, then `MINID` for the age limit on every
//!   prune), not with `~`: an approximate trim cannot say which ids it dropped, and
//!   replay needs the newest dropped id of each stream, which the scripts record in the
//!   hash `<prefix>:trimmed` (Redis's own `max-deleted-entry-id` counts `XDEL` only).
//! - **Replay**: a Lua script reads the stream's last issued id, its newest dropped id
//!   and the entries after a position in one atomic step, so a trim in between cannot
//!   hide a gap: a position below the newest dropped id gets a reset, as in SQLite.
//! - **Live**: [`SharedStore::wait_after`] waits with `XREAD BLOCK` on a connection of its own
//!   (a blocked connection can carry nothing else; they come from a small pool), then
//!   reads with the replay script, which also reports entries trimmed before they could
//!   be read.
//! - **Leases** (`<prefix>:lead:<job>`, `SET PX`) let one instance at a time run a job
//!   that must not run twice, the demo counter.
//!
//! Every call has a deadline: while Redis is away, publishes fail fast (`503`) instead of
//! hanging, and [`StoreHealth`] says why until a call succeeds again. A background ping keeps
//! that state current when nothing else talks to Redis.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use async_trait::async_trait;
use common::Notification;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::io::tcp::socket2::TcpKeepalive;
use redis::io::tcp::TcpSettings;
use redis::streams::{StreamId, StreamRangeReply};
use redis::{AsyncConnectionConfig, Client, Cmd, FromRedisValue, IntoConnectionInfo, Script};

use super::{
    Draft, Entry, Error, EventId, Page, Retention, SharedStore, Store, StoreHealth, StoredStream,
};

/// The longest a call to Redis may take before it counts as failed.
const DEADLINE: Duration = Duration::from_secs(3);
/// How long a silent peer is given before its connection is dropped (see [`tcp_settings`]).
const DEAD_PEER: Duration = Duration::from_secs(10);
/// How often the health of an idle connection is checked.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Blocking connections kept for reuse by stream followers.
const IDLE_BLOCKING: usize = 16;

/// Trims the stream `key` (named `name`) to its newest `cap` entries, exactly, and records
/// in the hash `trimmed` the newest id it dropped. Redis does not record that id itself
/// (`max-deleted-entry-id` counts `XDEL` only), and replay needs it to tell a position
/// that lost entries from one that did not. The newest dropped id is found by reading the
/// shorter side (the excess from the old end, or the kept entries from the new end); in
/// steady state an append drops one entry: O(1) per append.
const TRIM_TO: &str = r"
local function trim_to(key, trimmed, name, cap)
  local excess = redis.call('XLEN', key) - cap
  if excess <= 0 then return 0 end
  local newest_gone
  if excess <= cap then
    local gone = redis.call('XRANGE', key, '-', '+', 'COUNT', excess)
    newest_gone = gone[#gone][1]
  else
    local kept = redis.call('XREVRANGE', key, '+', '-', 'COUNT', cap + 1)
    newest_gone = kept[#kept][1]
  end
  redis.call('HSET', trimmed, name, newest_gone)
  return redis.call('XTRIM', key, 'MAXLEN', cap)
end
";

/// Appends a batch, all in one script (atomic, one round trip). `KEYS`: the set of stream
/// names, the trimmed-through hash, then the stream key of each draft. `ARGV`: the time,
/// then per draft its name, count cap (0: none), title, body and level. Returns the ids.
const APPEND: &str = r"
local ids = {}
for i = 3, #KEYS do
  local a = 2 + (i - 3) * 5
  local name, cap = ARGV[a], tonumber(ARGV[a + 1])
  ids[#ids + 1] = redis.call('XADD', KEYS[i], '*', 'title', ARGV[a + 2], 'body', ARGV[a + 3],
    'level', ARGV[a + 4], 'created_at', ARGV[1])
  redis.call('SADD', KEYS[1], name)
  if cap > 0 then trim_to(KEYS[i], KEYS[2], name, cap) end
end
return ids
";

/// Applies retention to one stream. `KEYS`: the stream key, the trimmed-through hash, the
/// set of stream names. `ARGV`: its name, its count cap (0: none), the oldest id kept
/// (`ms-0`; '': no age limit). A stream left empty leaves the set (an append puts it back;
/// its trimmed-through mark stays). Returns how many entries went.
const TRIM: &str = r"
local n = 0
if tonumber(ARGV[2]) > 0 then n = trim_to(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])) end
if ARGV[3] ~= '' then
  local gone = redis.call('XREVRANGE', KEYS[1], '(' .. ARGV[3], '-', 'COUNT', 1)
  if #gone > 0 then
    redis.call('HSET', KEYS[2], ARGV[1], gone[1][1])
    n = n + redis.call('XTRIM', KEYS[1], 'MINID', ARGV[3])
  end
end
if redis.call('XLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[3], ARGV[1]) end
return n
";

/// Takes or keeps the lease `KEYS[1]` for the holder `ARGV[1]`, for `ARGV[2]` ms; 1 when
/// the holder has it.
const LEAD: &str = r"
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// The stream's last issued id, the newest id retention dropped from it, and (when
/// `ARGV[3]` is not 0) up to `ARGV[3]` entries after `ARGV[2]`: in one script, so in one
/// consistent view. `KEYS`: the stream key, the trimmed-through hash; `ARGV[1]`: its name.
const POSITION_AND_RANGE: &str = r"
local last = '0-0'
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last = info[i + 1] end
  end
end
local trimmed = redis.call('HGET', KEYS[2], ARGV[1]) or '0-0'
local entries = {}
if ARGV[3] ~= '0' then
  entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[2], '+', 'COUNT', ARGV[3])
end
return {last, trimmed, entries}
";

/// A Redis Streams-backed [`Store`].
pub struct RedisStore {
    client: Client,
    /// Every call but the blocking reads; reconnects by itself.
    conn: ConnectionManager,
    /// Connections for `XREAD BLOCK`, idle between two reads.
    blocking: Mutex<Vec<MultiplexedConnection>>,
    keys: Keys,
    /// Count caps applied on every append (an exact `MAXLEN` in the append script).
    retention: Retention,
    scripts: Scripts,
    health: Arc<StoreHealth>,
    /// Why Redis refuses writes though it answers (see [`RedisStore::write`]).
    refusal: StoreHealth,
}

/// The Lua scripts, loaded once per Redis (and again after a restart) by `EVALSHA`.
struct Scripts {
    append: Script,
    trim: Script,
    position_and_range: Script,
    lead: Script,
}

/// Where the hub's data lives in Redis.
struct Keys {
    prefix: String,
}

impl Keys {
    fn stream(&self, name: &str) -> String {
        format!("{}:stream:{name}", self.prefix)
    }

    fn streams(&self) -> String {
        format!("{}:streams", self.prefix)
    }

    /// The lease of the job `name` (see [`Store::lead`]).
    fn lease(&self, name: &str) -> String {
        format!("{}:lead:{name}", self.prefix)
    }

    /// Per stream, the newest id retention dropped.
    fn trimmed(&self) -> String {
        format!("{}:trimmed", self.prefix)
    }
}

impl RedisStore {
    /// Connects to the Redis at `url`, keeping this hub's keys under `prefix` and the
    /// count caps of `retention` on every append. Fails when Redis cannot be reached, so
    /// that a wrong URL is found at start rather than at the first publish.
    pub async fn connect(url: &str, prefix: &str, retention: Retention) -> anyhow::Result<Self> {
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
            ConnectionManager::new_with_config(client.clone(), config),
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
        tokio::spawn(ping(Arc::downgrade(&health), conn.clone()));
        Ok(Self {
            client,
            conn,
            blocking: Mutex::default(),
            keys: Keys {
                prefix: prefix.to_owned(),
            },
            retention,
            scripts: Scripts {
                append: Script::new(&format!("{TRIM_TO}{APPEND}")),
                trim: Script::new(&format!("{TRIM_TO}{TRIM}")),
                position_and_range: Script::new(POSITION_AND_RANGE),
                lead: Script::new(LEAD),
            },
            health,
            refusal: StoreHealth::default(),
        })
    }

    /// Runs one call against Redis with [`DEADLINE`], recording the outcome in `health`.
    async fn call<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Error> {
        self.call_within(what, DEADLINE, call).await
    }

    /// [`RedisStore::call`] with a deadline of `limit`.
    async fn call_within<T>(
        &self,
        what: &str,
        limit: Duration,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Error> {
        let timed = tokio::time::timeout(limit, call).await;
        self.health.track(described(what, limit, timed))
    }

    /// [`RedisStore::call`] for an append. Redis can be reachable and still refuse writes
    /// (out of memory, a read-only replica after a failover, a failed disk save): such a
    /// refusal is kept in `refusal` until an append succeeds, so that the pings, which
    /// still succeed, do not hide it every second.
    async fn write<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Error> {
        let timed = tokio::time::timeout(DEADLINE, call).await;
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

    /// Runs `command` with [`RedisStore::call`].
    async fn query<T: FromRedisValue>(&self, what: &str, command: Cmd) -> Result<T, Error> {
        let mut conn = self.conn.clone();
        self.call(what, async move { command.query_async(&mut conn).await })
            .await
    }

    /// The stream's newest position (its last issued id, or its newest dropped id if that
    /// is higher), its newest dropped id, and up to `limit` entries after `after` (none
    /// for a `limit` of 0).
    async fn position_and_range(
        &self,
        stream: &str,
        after: EventId,
        limit: usize,
    ) -> Result<(EventId, EventId, Vec<Arc<Entry>>), Error> {
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.position_and_range.prepare_invoke();
        invocation
            .key(self.keys.stream(stream))
            .key(self.keys.trimmed())
            .arg(stream)
            .arg(after.to_string())
            .arg(limit);
        let (last, trimmed, range): (String, String, StreamRangeReply) = self
            .call("read a stream", invocation.invoke_async(&mut conn))
            .await?;
        let entries = range
            .ids
            .iter()
            .map(|item| entry(stream, item))
            .collect::<Result<_, _>>()?;
        // A stream key deleted by hand (or evicted) restarts at 0-0 while its trimmed mark
        // stays: the newest position is whichever is higher, so that a reset to it holds.
        let trimmed = redis_id(&trimmed)?;
        Ok((redis_id(&last)?.max(trimmed), trimmed, entries))
    }

    /// The names of the streams with entries (a stream that retention empties leaves the
    /// set; its next append puts it back).
    async fn stream_names(&self) -> Result<Vec<String>, Error> {
        let mut list = redis::cmd("SMEMBERS");
        list.arg(self.keys.streams());
        self.query("list streams", list).await
    }

    /// A connection for one blocking read: an idle one, or a new one.
    async fn blocking_connection(&self) -> Result<MultiplexedConnection, Error> {
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
    fn put_back(&self, conn: MultiplexedConnection) {
        let mut idle = self.blocking.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_BLOCKING {
            idle.push(conn);
        }
    }
}

/// When the entry `id` was appended, from the milliseconds in it (Redis's clock, so
/// across machines as exact as their clocks agree): the start of the publish → delivery
/// latency of entries that other instances published.
fn appended_at(id: EventId) -> Instant {
    let age = Duration::from_millis(now_ms().saturating_sub(id.major));
    Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
}

/// Milliseconds since the Unix epoch: the unit of Redis stream ids.
fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or_default()
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
async fn ping(health: Weak<StoreHealth>, mut conn: ConnectionManager) {
    let mut every = tokio::time::interval(PING_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(health) = health.upgrade() else {
            return;
        };
        let ping = redis::cmd("PING");
        let timed = tokio::time::timeout(DEADLINE, ping.query_async::<String>(&mut conn)).await;
        let _ = health.track(described("answer a ping", DEADLINE, timed));
    }
}

/// A Redis stream id (`ms-seq`) as an [`EventId`].
fn redis_id(text: &str) -> Result<EventId, Error> {
    text.parse()
        .map_err(|_| anyhow!("Redis returned `{text}`, which is not a stream id"))
}

/// The entry of `stream` that Redis holds as `item`.
fn entry(stream: &str, item: &StreamId) -> Result<Arc<Entry>, Error> {
    let field = |name: &str| -> Result<String, Error> {
        item.get(name)
            .ok_or_else(|| anyhow!("entry {} of {stream} has no `{name}`", item.id))
    };
    let level: String = field("level")?;
    Ok(Entry::new(
        redis_id(&item.id)?,
        Notification {
            id: item.id.clone(),
            stream: stream.to_owned(),
            title: field("title")?,
            body: field("body")?,
            level: level.parse().unwrap_or_default(),
            created_at: field("created_at")?,
        },
    ))
}

#[async_trait]
impl Store for RedisStore {
    async fn append(&self, drafts: Vec<Draft>) -> Result<Vec<Arc<Entry>>, Error> {
        let created_at = crate::timestamp::now();
        let mut append = self.scripts.append.prepare_invoke();
        append
            .key(self.keys.streams())
            .key(self.keys.trimmed())
            .arg(&created_at);
        for draft in &drafts {
            append
                .key(self.keys.stream(&draft.stream))
                .arg(&draft.stream)
                .arg(self.retention.cap(&draft.stream).unwrap_or(0))
                .arg(&draft.title)
                .arg(&draft.body)
                .arg(draft.level.as_str());
        }
        let mut conn = self.conn.clone();
        let ids: Vec<String> = self
            .write("store notifications", append.invoke_async(&mut conn))
            .await?;
        drafts
            .into_iter()
            .zip(ids)
            .map(|(draft, id)| {
                Ok(Entry::new(
                    redis_id(&id)?,
                    draft.stored(id, created_at.clone()),
                ))
            })
            .collect()
    }

    async fn after(&self, stream: &str, after: EventId, limit: usize) -> Result<Page, Error> {
        if after == EventId::UNKNOWN {
            return Ok(Page {
                entries: Vec::new(),
                reset_to: Some(self.head(stream).await?),
            });
        }
        let (newest, trimmed, entries) =
            self.position_and_range(stream, after, limit.max(1)).await?;
        if after < trimmed || after > newest {
            return Ok(Page {
                entries: Vec::new(),
                reset_to: Some(newest),
            });
        }
        Ok(Page {
            entries,
            reset_to: None,
        })
    }

    async fn head(&self, stream: &str) -> Result<EventId, Error> {
        let (newest, _, _) = self
            .position_and_range(stream, EventId::default(), 0)
            .await?;
        Ok(newest)
    }

    async fn latest(&self, stream: &str, limit: usize) -> Result<Vec<Arc<Entry>>, Error> {
        let mut read = redis::cmd("XREVRANGE");
        read.arg(self.keys.stream(stream))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(limit.max(1));
        let newest_first: StreamRangeReply = self.query("read a stream", read).await?;
        newest_first
            .ids
            .iter()
            .rev()
            .map(|item| entry(stream, item))
            .collect()
    }

    async fn prune(&self, retention: &Retention) -> Result<u64, Error> {
        let streams = self.stream_names().await?;
        let oldest_kept = retention
            .max_age
            .map(|age| now_ms().saturating_sub(age.as_millis().try_into().unwrap_or(u64::MAX)));
        let mut deleted = 0;
        for stream in streams {
            let mut trim = self.scripts.trim.prepare_invoke();
            trim.key(self.keys.stream(&stream))
                .key(self.keys.trimmed())
                .key(self.keys.streams())
                .arg(&stream)
                .arg(retention.cap(&stream).unwrap_or(0))
                .arg(oldest_kept.map(|ms| format!("{ms}-0")).unwrap_or_default());
            let mut conn = self.conn.clone();
            let n: u64 = self
                .call("trim a stream", trim.invoke_async(&mut conn))
                .await?;
            deleted += n;
        }
        Ok(deleted)
    }

    async fn streams(&self) -> Result<Vec<StoredStream>, Error> {
        let mut names = self.stream_names().await?;
        names.sort();
        let mut reads = redis::pipe();
        for name in &names {
            reads.cmd("XLEN").arg(self.keys.stream(name));
            reads
                .cmd("XREVRANGE")
                .arg(self.keys.stream(name))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1);
        }
        let mut conn = self.conn.clone();
        let figures: Vec<(u64, StreamRangeReply)> = self
            .call("read streams", reads.query_async(&mut conn))
            .await?;
        names
            .into_iter()
            .zip(figures)
            .filter_map(|(stream, (count, newest))| {
                let newest = newest.ids.first()?;
                Some(entry(&stream, newest).map(|newest| StoredStream {
                    stream,
                    count,
                    newest,
                }))
            })
            .collect()
    }

    fn problem(&self) -> Option<String> {
        self.refusal.problem().or_else(|| self.health.problem())
    }

    fn shared(&self) -> Option<&dyn SharedStore> {
        Some(self)
    }

    async fn lead(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, Error> {
        let mut lead = self.scripts.lead.prepare_invoke();
        lead.key(self.keys.lease(name))
            .arg(holder)
            .arg(ttl.as_millis().max(1) as u64);
        let mut conn = self.conn.clone();
        let held: i64 = self
            .call("take a lease", lead.invoke_async(&mut conn))
            .await?;
        Ok(held == 1)
    }
}

#[async_trait]
impl SharedStore for RedisStore {
    async fn wait_after(
        &self,
        stream: &str,
        after: EventId,
        limit: usize,
        wait: Duration,
    ) -> Result<Page, Error> {
        // Waits for anything after `after`, then reads with the same atomic script as
        // replay, which also says whether retention dropped entries after `after` before
        // they could be read (the blocking read alone would skip them in silence).
        let mut conn = self.blocking_connection().await?;
        let mut wake = redis::cmd("XREAD");
        wake.arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(wait.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(self.keys.stream(stream))
            .arg(after.to_string());
        let woken = wake.query_async::<Option<redis::Value>>(&mut conn);
        let woken = self
            .call_within(&format!("read {stream}"), wait + DEADLINE, woken)
            .await;
        let woken = match woken {
            Ok(woken) => woken,
            Err(err) => {
                // Dropped, and the idle ones with it: they went through the same outage.
                self.blocking
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clear();
                return Err(err);
            }
        };
        self.put_back(conn);
        if woken.is_none() {
            return Ok(Page::default());
        }
        let page = self.after(stream, after, limit).await?;
        for entry in &page.entries {
            entry.fan_out.published(appended_at(entry.id));
        }
        Ok(page)
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

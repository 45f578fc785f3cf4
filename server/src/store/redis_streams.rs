//! The shared store: Redis Streams, for several instances serving the same streams.
//!
//! Each notification stream is a Redis Stream under `<prefix>:stream:<name>`, and the set
//! `<prefix>:streams` names them all (read at start, and by retention). Ids are Redis's own (`1732371600000-0`): Redis
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
//! - **Live**: the append script also records each entry in the change feed
//!   `<prefix>:changes` (its stream, its id, a count), kept for [`CHANGES_KEPT`]; each
//!   instance follows it with one reader ([`SharedStore::changes_after`]: `XREAD BLOCK`
//!   on a connection of its own while it is idle, then a script that reads the changes
//!   with their entries), so an instance holds one blocked connection however many
//!   streams it follows. The count tells a reader that changes it did not read were
//!   trimmed; a change whose entry retention dropped comes as such.
//! - **Leases** (`<prefix>:lead:<job>`, `SET PX`) let one instance at a time run a job
//!   that must not run twice, the demo counter.
//!
//! Every call goes through [`RedisConnection`]: deadlines, reconnection, the pool of
//! blocking connections, health.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use async_trait::async_trait;
use common::Notification;
use redis::streams::{StreamId, StreamRangeReply};
use redis::Script;

use super::redis_connection::{self, RedisConnection};
use super::{
    Change, ChangeCursor, Changes, Draft, Entry, Error, EventId, Page, Retention, SharedStore,
    Store, StoredStream,
};

/// How long the change feed keeps a change (at least; it is trimmed roughly): a follower
/// cut off from Redis for longer catches every stream up from the store.
pub const CHANGES_KEPT: Duration = Duration::from_secs(300);

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
/// names, the trimmed-through hash, the change feed, its counter, then the stream key of
/// each draft. `ARGV`: the time, how many milliseconds the change feed keeps, then per
/// draft its name, count cap (0: none), title, body and level. Returns the ids.
///
/// Each entry is also recorded in the change feed (its stream, its id and the counter's
/// next value), which every instance follows with one reader (see [`SharedStore`]); the
/// feed is trimmed by age, roughly (`MINID ~`, whole nodes at a time), and the counter
/// tells a follower whether any change it did not read was trimmed.
const APPEND: &str = r"
local ids = {}
local now = redis.call('TIME')
local oldest_kept = (tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)) - tonumber(ARGV[2])
for i = 5, #KEYS do
  local a = 3 + (i - 5) * 5
  local name, cap = ARGV[a], tonumber(ARGV[a + 1])
  local id = redis.call('XADD', KEYS[i], '*', 'title', ARGV[a + 2], 'body', ARGV[a + 3],
    'level', ARGV[a + 4], 'created_at', ARGV[1])
  ids[#ids + 1] = id
  redis.call('SADD', KEYS[1], name)
  if cap > 0 then trim_to(KEYS[i], KEYS[2], name, cap) end
  local n = redis.call('INCR', KEYS[4])
  redis.call('XADD', KEYS[3], 'MINID', '~', oldest_kept, '*', 's', name, 'i', id, 'n', n)
end
return ids
";

/// The changes after `ARGV[1]` in the change feed `KEYS[1]`, at most `ARGV[2]`, each as
/// its id, its counter value, its stream, its entry's id and the entry's fields (none when
/// retention dropped the entry before it was read), and the counter `KEYS[2]`. The stream
/// keys are `ARGV[3]` followed by the name.
const CHANGES: &str = r"
local changes = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
local out = {}
for i, change in ipairs(changes) do
  local f = change[2]
  local name, id, n = f[2], f[4], f[6]
  local found = redis.call('XRANGE', ARGV[3] .. name, id, id)
  local fields = {}
  if found[1] then fields = found[1][2] end
  out[i] = {change[1], n, name, id, fields}
end
return {redis.call('GET', KEYS[2]) or '0', out}
";

/// Where the change feed `KEYS[1]` ends now: its last id (`0-0` when it is empty) and the
/// counter `KEYS[2]`, in one view.
const CHANGES_HEAD: &str = r"
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local id = '0-0'
if last[1] then id = last[1][1] end
return {id, redis.call('GET', KEYS[2]) or '0'}
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

/// The stream's last issued id, the newest id retention dropped from it, (when `ARGV[3]`
/// is not 0) up to `ARGV[3]` entries after `ARGV[2]`, and Redis's clock: in one script, so
/// in one consistent view. `KEYS`: the stream key, the trimmed-through hash; `ARGV[1]`: its name.
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
local now = redis.call('TIME')
return {last, trimmed, entries, now[1], now[2]}
";

/// A Redis Streams-backed [`Store`].
pub struct RedisStore {
    redis: RedisConnection,
    keys: Keys,
    /// Count caps applied on every append (an exact `MAXLEN` in the append script).
    retention: Retention,
    scripts: Scripts,
}

/// The Lua scripts, loaded once per Redis (and again after a restart) by `EVALSHA`.
struct Scripts {
    append: Script,
    changes: Script,
    changes_head: Script,
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

    /// Where every stream key starts: the change feed's reader adds the name.
    fn stream_prefix(&self) -> String {
        format!("{}:stream:", self.prefix)
    }

    fn streams(&self) -> String {
        format!("{}:streams", self.prefix)
    }

    /// The change feed: every entry appended, by stream and id (see [`APPEND`]).
    fn changes(&self) -> String {
        format!("{}:changes", self.prefix)
    }

    /// How many changes were ever made.
    fn change_count(&self) -> String {
        format!("{}:changes:count", self.prefix)
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
        Ok(Self {
            redis: RedisConnection::open(url).await?,
            keys: Keys {
                prefix: prefix.to_owned(),
            },
            retention,
            scripts: Scripts {
                append: Script::new(&format!("{TRIM_TO}{APPEND}")),
                changes: Script::new(CHANGES),
                changes_head: Script::new(CHANGES_HEAD),
                trim: Script::new(&format!("{TRIM_TO}{TRIM}")),
                position_and_range: Script::new(POSITION_AND_RANGE),
                lead: Script::new(LEAD),
            },
        })
    }

    /// The stream's newest position (its last issued id, or its newest dropped id if that
    /// is higher), its newest dropped id, up to `limit` entries after `after` (none for a
    /// `limit` of 0), and the clock's position (see [`clock_position`]).
    async fn position_and_range(
        &self,
        stream: &str,
        after: EventId,
        limit: usize,
    ) -> Result<(EventId, EventId, Vec<Arc<Entry>>, EventId), Error> {
        let mut conn = self.redis.manager();
        let mut invocation = self.scripts.position_and_range.prepare_invoke();
        invocation
            .key(self.keys.stream(stream))
            .key(self.keys.trimmed())
            .arg(stream)
            .arg(after.to_string())
            .arg(limit);
        let (last, trimmed, range, secs, micros): (String, String, StreamRangeReply, u64, u64) =
            self.redis
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
        Ok((
            redis_id(&last)?.max(trimmed),
            trimmed,
            entries,
            clock_position(secs, micros),
        ))
    }
}

/// When the entry `id` was appended, from the milliseconds in it (Redis's clock, so
/// across machines as exact as their clocks agree): the start of the publish → delivery
/// latency of entries that other instances published.
fn appended_at(id: EventId) -> Instant {
    let age = Duration::from_millis(now_ms().saturating_sub(id.major));
    Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
}

/// The position that Redis's clock at `secs`.`micros` gives in every stream: past every id
/// issued before that millisecond, before every id issued after it (Redis issues ids from
/// its own clock, and never below a stream's last one). An id issued in that same
/// millisecond lies after it: it goes to a subscriber starting there, never missing.
fn clock_position(secs: u64, micros: u64) -> EventId {
    let ms = secs.saturating_mul(1000).saturating_add(micros / 1000);
    EventId::new(ms.saturating_sub(1), u64::MAX)
}

/// Milliseconds since the Unix epoch: the unit of Redis stream ids.
fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or_default()
}

/// A Redis stream id (`ms-seq`) as an [`EventId`].
fn redis_id(text: &str) -> Result<EventId, Error> {
    text.parse()
        .map_err(|_| anyhow!("Redis returned `{text}`, which is not a stream id"))
}

/// The entry of `stream` that Redis holds as `item`.
fn entry(stream: &str, item: &StreamId) -> Result<Arc<Entry>, Error> {
    entry_of(stream, &item.id, |name| item.get(name))
}

/// The entry `id` of `stream`, whose fields `field` gives by name.
fn entry_of(
    stream: &str,
    id: &str,
    field: impl Fn(&str) -> Option<String>,
) -> Result<Arc<Entry>, Error> {
    let field =
        |name: &str| field(name).ok_or_else(|| anyhow!("entry {id} of {stream} has no `{name}`"));
    let level: String = field("level")?;
    Ok(Entry::new(
        redis_id(id)?,
        Notification {
            id: id.to_owned(),
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
            .key(self.keys.changes())
            .key(self.keys.change_count())
            .arg(&created_at)
            .arg(CHANGES_KEPT.as_millis() as u64);
        for draft in &drafts {
            append
                .key(self.keys.stream(&draft.stream))
                .arg(&draft.stream)
                .arg(self.retention.cap(&draft.stream).unwrap_or(0))
                .arg(&draft.title)
                .arg(&draft.body)
                .arg(draft.level.as_str());
        }
        let mut conn = self.redis.manager();
        let ids: Vec<String> = self
            .redis
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
        let (newest, trimmed, entries, clock) =
            self.position_and_range(stream, after, limit.max(1)).await?;
        // A position of the clock (see `clock_position`: no entry id has that sequence)
        // holds in every stream up to the clock; an entry id past the stream's newest was
        // never issued here (or Redis lost it): a reset either way.
        let clock_shaped = after.minor == u64::MAX && after <= clock;
        if after < trimmed || (after > newest && !clock_shaped) {
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
        let (newest, _, _, _) = self
            .position_and_range(stream, EventId::default(), 0)
            .await?;
        Ok(newest)
    }

    fn everywhere(&self, id: EventId) -> EventId {
        match id.minor {
            u64::MAX => id,
            _ => EventId::new(id.major.saturating_sub(1), u64::MAX),
        }
    }

    async fn clock(&self) -> Result<EventId, Error> {
        let (secs, micros): (u64, u64) = self
            .redis
            .query("read the clock", redis::cmd("TIME"))
            .await?;
        Ok(clock_position(secs, micros))
    }

    async fn stream_names(&self) -> Result<Vec<String>, Error> {
        let mut list = redis::cmd("SMEMBERS");
        list.arg(self.keys.streams());
        self.redis.query("list streams", list).await
    }

    async fn latest(&self, stream: &str, limit: usize) -> Result<Vec<Arc<Entry>>, Error> {
        let mut read = redis::cmd("XREVRANGE");
        read.arg(self.keys.stream(stream))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(limit.max(1));
        let newest_first: StreamRangeReply = self.redis.query("read a stream", read).await?;
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
            let mut conn = self.redis.manager();
            let n: u64 = self
                .redis
                .call("trim a stream", trim.invoke_async(&mut conn))
                .await?;
            deleted += n;
        }
        Ok(deleted)
    }

    async fn streams(&self) -> Result<Vec<StoredStream>, Error> {
        let mut names = self.stream_names().await?;
        if names.is_empty() {
            // An empty pipeline is an error to Redis.
            return Ok(Vec::new());
        }
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
        let mut conn = self.redis.manager();
        let figures: Vec<(u64, StreamRangeReply)> = self
            .redis
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
        self.redis.problem()
    }

    fn shared(&self) -> Option<&dyn SharedStore> {
        Some(self)
    }

    async fn lead(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, Error> {
        let mut lead = self.scripts.lead.prepare_invoke();
        lead.key(self.keys.lease(name))
            .arg(holder)
            .arg(ttl.as_millis().max(1) as u64);
        let mut conn = self.redis.manager();
        let held: i64 = self
            .redis
            .call("take a lease", lead.invoke_async(&mut conn))
            .await?;
        Ok(held == 1)
    }
}

#[async_trait]
impl SharedStore for RedisStore {
    async fn changes_head(&self) -> Result<ChangeCursor, Error> {
        let mut head = self.scripts.changes_head.prepare_invoke();
        head.key(self.keys.changes()).key(self.keys.change_count());
        let mut conn = self.redis.manager();
        let (id, count): (String, u64) = self
            .redis
            .call("read the change feed", head.invoke_async(&mut conn))
            .await?;
        Ok(ChangeCursor {
            id: redis_id(&id)?,
            count,
        })
    }

    async fn changes_after(
        &self,
        after: ChangeCursor,
        limit: usize,
        wait: Duration,
    ) -> Result<Changes, Error> {
        let read = self.read_changes(after, limit).await?;
        if !read.changes.is_empty() || read.lost {
            return Ok(read);
        }
        // Nothing yet: wait for the feed to grow, then read again with the script, which
        // also tells changes whose entries retention dropped meanwhile.
        let mut conn = self.redis.blocking_connection().await?;
        let mut wake = redis::cmd("XREAD");
        wake.arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(wait.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(self.keys.changes())
            .arg(after.id.to_string());
        let woken = wake.query_async::<Option<redis::Value>>(&mut conn);
        let woken = self
            .redis
            .call_within(
                "wait for the change feed",
                wait + redis_connection::DEADLINE,
                woken,
            )
            .await;
        let woken = match woken {
            Ok(woken) => woken,
            Err(err) => {
                // Dropped, and the idle ones with it: they went through the same outage.
                self.redis.drop_blocking();
                return Err(err);
            }
        };
        self.redis.put_back(conn);
        if woken.is_none() {
            return Ok(Changes {
                cursor: after,
                ..Changes::default()
            });
        }
        self.read_changes(after, limit).await
    }
}

impl RedisStore {
    /// The changes after `after`, at most `limit`, without waiting.
    async fn read_changes(&self, after: ChangeCursor, limit: usize) -> Result<Changes, Error> {
        let mut read = self.scripts.changes.prepare_invoke();
        read.key(self.keys.changes())
            .key(self.keys.change_count())
            .arg(after.id.to_string())
            .arg(limit.max(1))
            .arg(self.keys.stream_prefix());
        let mut conn = self.redis.manager();
        type Read = (String, String, String, String, Vec<String>);
        let (count, read): (u64, Vec<Read>) = self
            .redis
            .call("read the change feed", read.invoke_async(&mut conn))
            .await?;
        let mut cursor = after;
        let mut lost = false;
        let mut changes = Vec::with_capacity(read.len());
        for (change_id, n, stream, id, fields) in read {
            let n: u64 = n
                .parse()
                .map_err(|_| anyhow!("the change feed holds `{n}` as a count"))?;
            lost |= n != cursor.count + 1;
            cursor = ChangeCursor {
                id: redis_id(&change_id)?,
                count: n,
            };
            changes.push(change(stream, &id, fields)?);
        }
        // Nothing read, though changes were made after the cursor: all were trimmed.
        if changes.is_empty() && count > cursor.count {
            lost = true;
            cursor = self.changes_head().await?;
        }
        Ok(Changes {
            changes,
            cursor,
            lost,
        })
    }
}

/// The change of `stream` to its entry `id`, whose fields are `fields` (name, value, …;
/// none when retention dropped it).
fn change(stream: String, id: &str, fields: Vec<String>) -> Result<Change, Error> {
    if fields.is_empty() {
        return Ok(Change::Dropped {
            id: redis_id(id)?,
            stream,
        });
    }
    let field = |name: &str| {
        (fields.chunks_exact(2))
            .find(|pair| pair[0] == name)
            .map(|pair| pair[1].clone())
    };
    let entry = entry_of(&stream, id, field)?;
    entry.fan_out.published(appended_at(entry.id));
    Ok(Change::Appended(entry))
}

//! Where notifications are kept: the event log behind replay and history.
//!
//! One small interface, [`Store`], with two backends: SQLite ([`sqlite`]), the embedded
//! default, and Redis Streams ([`redis_streams`]), which several instances share. Ids are
//! ordered pairs, and a page read says by itself whether the position it was read from is
//! gone. A store that other instances append to as well also implements [`SharedStore`]: the
//! hub then takes live entries from the store rather than from its own appends.

pub mod redis_connection;
pub mod redis_streams;
pub mod sqlite;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use common::Notification;

pub use common::Draft;

/// A position in a store's log. Totally ordered, and opaque to clients, who see it as a
/// string: SQLite ids are `N` (`minor` is always 0); Redis Stream ids would be `ms-seq`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub major: u64,
    pub minor: u64,
}

impl EventId {
    /// A position that no store issues: reading after it always gives a reset.
    pub const UNKNOWN: Self = Self::new(u64::MAX, u64::MAX);

    pub const fn new(major: u64, minor: u64) -> Self {
        Self { major, minor }
    }

    /// The id a client sent, or [`EventId::UNKNOWN`] when it is not an id of this server
    /// (an old database, another backend, garbage in a browser's storage). Such a client
    /// is told to reload, as one whose position retention dropped.
    pub fn parse_or_unknown(text: &str) -> Self {
        text.parse().unwrap_or(Self::UNKNOWN)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.minor {
            0 => write!(f, "{}", self.major),
            minor => write!(f, "{}-{minor}", self.major),
        }
    }
}

impl FromStr for EventId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("`{s}` is not an event id of this server");
        let (major, minor) = s.split_once('-').unwrap_or((s, "0"));
        let number = |part: &str| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            part.parse::<u64>().map_err(|_| invalid())
        };
        Ok(Self::new(number(major)?, number(minor)?))
    }
}

/// A stored notification.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: EventId,
    pub notification: Notification,
    /// What fan-out keeps with the entry while it goes to subscribers.
    pub fan_out: FanOut,
}

/// What fan-out keeps with an entry: when it was published, until its first write to a
/// subscriber measures the publish → first delivery latency, and its encoding on the wire,
/// made once by whoever sends it (the SSE layer) however many subscribers it goes to. Not
/// part of the entry's identity: entries compare equal whatever it holds.
#[derive(Debug, Default)]
pub struct FanOut {
    published: OnceLock<Instant>,
    first_delivered: AtomicBool,
    wire: OnceLock<Bytes>,
    wire_without_id: OnceLock<Bytes>,
}

impl PartialEq for FanOut {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for FanOut {}

impl FanOut {
    /// Marks the entry as published (received by the hub) at `at`.
    pub fn published(&self, at: Instant) {
        let _ = self.published.set(at);
    }

    /// The time since it was published, the first time this is asked; `None` afterwards
    /// and for entries read back from the store.
    pub fn first_delivery(&self) -> Option<Duration> {
        let at = self.published.get()?;
        (!self.first_delivered.swap(true, Ordering::Relaxed)).then(|| at.elapsed())
    }

    /// The entry on the wire: `encode`d by the first sender, shared by the others.
    pub fn wire(&self, encode: impl FnOnce() -> Bytes) -> Bytes {
        self.wire.get_or_init(encode).clone()
    }

    /// The same without its `id:` line, for subscribers whose ids are their own.
    pub fn wire_without_id(&self, encode: impl FnOnce() -> Bytes) -> Bytes {
        self.wire_without_id.get_or_init(encode).clone()
    }
}

impl Entry {
    pub fn new(id: EventId, notification: Notification) -> Arc<Self> {
        Arc::new(Self {
            id,
            notification,
            fan_out: FanOut::default(),
        })
    }
}

/// How long notifications are kept. A stream's oldest entries go first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many per stream.
    pub max_per_stream: Option<u64>,
    /// Drop entries older than this.
    pub max_age: Option<Duration>,
    /// Streams with a smaller cap of their own (the demo counter).
    pub per_stream: Vec<(String, u64)>,
}

impl Retention {
    /// Keep at most `max_per_stream` per stream, for at most `max_age`.
    pub fn new(max_per_stream: Option<u64>, max_age: Option<Duration>) -> Self {
        Self {
            max_per_stream,
            max_age,
            per_stream: Vec::new(),
        }
    }

    /// The count cap of `stream`.
    pub fn cap(&self, stream: &str) -> Option<u64> {
        self.per_stream
            .iter()
            .find(|(name, _)| name == stream)
            .map(|(_, cap)| *cap)
            .or(self.max_per_stream)
    }
}

/// Entries read after a position, and whether that position could be used at all.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// Oldest first.
    pub entries: Vec<Arc<Entry>>,
    /// `Some(id)` when entries after the position were dropped by retention, or the
    /// position was never issued by this store: the reader cannot catch up by replay and
    /// should start over from `id` (everything up to it counts as history). `entries` is
    /// then empty.
    pub reset_to: Option<EventId>,
}

/// What the store holds of one stream, for the streams overview.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredStream {
    pub stream: String,
    /// How many entries are stored.
    pub count: u64,
    /// The newest stored entry.
    pub newest: Arc<Entry>,
}

/// A store failure; handlers turn it into a 503 with the reason.
pub type Error = anyhow::Error;

/// The event log. Appends are durable when they return; ids grow with every append.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores `drafts` in order, all or none, durably (one commit, so one disk flush for the
    /// whole batch), and returns them as entries with their new ids and creation time.
    async fn append(&self, drafts: Vec<Draft>) -> Result<Vec<Arc<Entry>>, Error>;

    /// Entries of `stream` after `after`, oldest first, at most `limit`; read in one
    /// snapshot with the check that nothing after `after` is missing.
    async fn after(&self, stream: &str, after: EventId, limit: usize) -> Result<Page, Error>;

    /// The position of a subscriber of `stream` that has seen everything stored so far:
    /// reading [`Store::after`] it never gives a reset, whatever retention does meanwhile.
    async fn head(&self, stream: &str) -> Result<EventId, Error>;

    /// A position in every stream at once, past everything stored so far: a new subscriber
    /// of several streams starts there (see `hub::Position`). Reading [`Store::after`] from
    /// it, in any stream, never gives a reset for being unknown.
    async fn clock(&self) -> Result<EventId, Error>;

    /// A position in every stream at or before the moment `id` was issued (for a plain
    /// entry id that becomes the base of a subscriber of several streams, see
    /// `hub::Position`): `id` itself where ids are one sequence over every stream (SQLite);
    /// the millisecond before it where each stream has its own ids from one clock (Redis),
    /// so an entry of another stream issued in that millisecond is not passed over.
    fn everywhere(&self, id: EventId) -> EventId {
        id
    }

    /// The names of the streams with entries (a stream that retention empties may leave
    /// the list; its next append puts it back).
    async fn stream_names(&self) -> Result<Vec<String>, Error>;

    /// The newest `limit` entries of `stream`, oldest first.
    async fn latest(&self, stream: &str, limit: usize) -> Result<Vec<Arc<Entry>>, Error>;

    /// Drops what `retention` no longer keeps; returns how many entries went.
    async fn prune(&self, retention: &Retention) -> Result<u64, Error>;

    /// Every stream with stored entries, by name.
    async fn streams(&self) -> Result<Vec<StoredStream>, Error>;

    /// Why the store cannot take publishes right now (a full disk, Redis unreachable), or
    /// `None` while it works. For `/healthz`.
    fn problem(&self) -> Option<String>;

    /// `Some` for a store that other instances append to as well.
    fn shared(&self) -> Option<&dyn SharedStore> {
        None
    }

    /// Whether `holder` may run the job `name`, of which one must run at a time among the
    /// instances sharing this store (the demo counter), for the next `ttl`; calling again
    /// before then keeps it. A store of one process always says yes.
    async fn lead(&self, _name: &str, _holder: &str, _ttl: Duration) -> Result<bool, Error> {
        Ok(true)
    }
}

/// A store shared by several instances. An instance cannot send its subscribers only what
/// it appended itself, so the hub follows the store's change feed: every entry appended to
/// any stream, by any instance, in the order appended. One reader per instance, however
/// many streams it follows (a reader per stream held a Redis connection each: 3,000
/// subscribers on their own streams were 3,000 blocked connections).
#[async_trait]
pub trait SharedStore: Send + Sync {
    /// Where the change feed ends now: a follower starting there reads everything
    /// appended afterwards.
    async fn changes_head(&self) -> Result<ChangeCursor, Error>;

    /// The changes after `after`, oldest first, at most `limit`, waiting up to `wait` for
    /// the first one (an empty read when none came).
    async fn changes_after(
        &self,
        after: ChangeCursor,
        limit: usize,
        wait: Duration,
    ) -> Result<Changes, Error>;
}

/// A position in a shared store's change feed: the id of the last change read, and how
/// many changes were ever made up to it (so that a follower can tell whether the feed
/// dropped any it did not read).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChangeCursor {
    pub id: EventId,
    pub count: u64,
}

/// What a read of the change feed found.
#[derive(Debug, Default)]
pub struct Changes {
    /// The changes read, oldest first.
    pub changes: Vec<Change>,
    /// Where the next read goes on from.
    pub cursor: ChangeCursor,
    /// Whether changes after the position read from were dropped before they could be
    /// read (the follower was away longer than the feed keeps them): any stream may have
    /// lost entries.
    pub lost: bool,
}

/// One change of the feed.
#[derive(Debug)]
pub enum Change {
    /// An entry appended.
    Appended(Arc<Entry>),
    /// An entry of `stream` appended, then dropped by retention before it could be read.
    Dropped { stream: String, id: EventId },
}

/// Whether a store works, as its latest operation found: the reason of the last failure
/// until an operation succeeds again. It logs each change once (not every failed publish).
#[derive(Debug, Default)]
pub struct StoreHealth {
    problem: Mutex<Option<String>>,
}

impl StoreHealth {
    /// Records an operation's outcome and passes it on.
    pub fn track<T>(&self, outcome: Result<T, Error>) -> Result<T, Error> {
        let mut problem = self.problem.lock().unwrap_or_else(PoisonError::into_inner);
        match &outcome {
            Ok(_) => {
                if let Some(was) = problem.take() {
                    tracing::info!("the store works again (it failed with: {was})");
                }
            }
            Err(err) => {
                let reason = format!("{err:#}");
                if problem.as_deref() != Some(reason.as_str()) {
                    tracing::error!("the store failed: {reason}");
                }
                *problem = Some(reason);
            }
        }
        outcome
    }

    /// The reason of the last failure, while it lasts.
    pub fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::EventId;

    #[test]
    fn event_ids_round_trip_and_order() {
        for text in ["0", "1", "42", "1700000000000-3"] {
            assert_eq!(text.parse::<EventId>().unwrap().to_string(), text);
        }
        assert_eq!("7-0".parse::<EventId>().unwrap(), EventId::new(7, 0));
        assert!(EventId::new(1, 5) < EventId::new(2, 0));
        for bad in [
            "",
            "-",
            "a",
            "1-",
            "-1",
            "1-2-3",
            "+1",
            " 1",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<EventId>().is_err(), "{bad:?}");
        }
    }
}

//! The live feed of each stream with subscribers on this instance: made on the first
//! subscriber, fed by the writer (a local store) or the hub's follower (a shared one),
//! and forgotten at the next [`SWEEP`] after its last subscriber left. A name costs
//! nothing here once nobody follows it: that is the bound on made-up names.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::broadcast;

use super::feed::{Feed, Live};
use crate::store::{Entry, EventId};

/// How often feeds nobody follows are forgotten and quiet feeds give back their old
/// entries: the longest a closed connection's streams cost memory.
pub const SWEEP: Duration = Duration::from_secs(2);

/// A feed just joined: the feed, a receiver of its channel, and where the feed stood
/// when the receiver was made (see [`Feed::join`]).
pub struct Joined {
    pub feed: Arc<Feed>,
    pub live: broadcast::Receiver<Live>,
    pub through: Option<EventId>,
}

impl Joined {
    /// Joins `feed`.
    fn to(feed: &Arc<Feed>) -> Self {
        let (live, through) = feed.join();
        Self {
            feed: feed.clone(),
            live,
            through,
        }
    }
}

/// The live feed of each stream that has subscribers (or had them until the last sweep).
pub struct Channels {
    by_stream: Mutex<HashMap<String, Arc<Feed>>>,
    /// How many recent entries each feed keeps: how far a subscriber may fall behind
    /// before it catches up from the store.
    keep: usize,
    /// Sweeps left that give memory back to the system (see [`give_back_memory`]).
    trims_owed: AtomicU8,
}

impl Channels {
    /// No feeds yet; each will keep up to `keep` recent entries; swept every [`SWEEP`]
    /// for as long as it lives.
    pub fn new(keep: usize) -> Arc<Self> {
        let channels = Arc::new(Self {
            by_stream: Mutex::default(),
            keep: keep.max(1),
            trims_owed: AtomicU8::new(0),
        });
        tokio::spawn(sweep(Arc::downgrade(&channels)));
        channels
    }

    /// Sends `entry` to the live subscribers of its stream, if it has any.
    pub fn send(&self, entry: &Arc<Entry>) {
        let by_stream = self
            .by_stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(feed) = by_stream.get(&entry.notification.stream) {
            feed.send(entry.clone());
        }
    }

    /// `stream`'s feed, made on first use standing at `through` (see [`Feed::new`]) and
    /// then passed to `made`, joined (see [`Feed::join`]). Under the registry lock, so
    /// that a sweep cannot drop the feed between lookup and join.
    pub fn join(
        &self,
        stream: &str,
        through: Option<EventId>,
        made: impl FnOnce(&Arc<Feed>),
    ) -> Joined {
        let mut by_stream = self
            .by_stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let feed = by_stream.entry(stream.to_owned()).or_insert_with(|| {
            let feed = Arc::new(Feed::new(self.keep, through));
            made(&feed);
            feed
        });
        Joined::to(feed)
    }

    /// `stream`'s feed joined, if this instance has one; none is made.
    pub fn join_existing(&self, stream: &str) -> Option<Joined> {
        self.by_stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(stream)
            .map(Joined::to)
    }

    /// Tells `stream`'s feed, if there is one, that its entries up to `through` were
    /// lost before they could be sent (see [`Feed::gap`]).
    pub fn gap(&self, stream: &str, through: EventId) {
        let feed = (self.by_stream.lock())
            .unwrap_or_else(PoisonError::into_inner)
            .get(stream)
            .cloned();
        if let Some(feed) = feed {
            feed.gap(Some(through));
        }
    }

    /// Tells every feed that entries may have been lost before they could be sent (the
    /// follower of a shared store lost track): see [`Feed::gap`].
    pub fn gap_all(&self) {
        for feed in self.feeds() {
            feed.gap(None);
        }
    }

    /// The feeds, taken out of the lock.
    fn feeds(&self) -> Vec<Arc<Feed>> {
        (self.by_stream.lock())
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// The number of live subscribers of each stream that has any.
    pub fn subscribers(&self) -> HashMap<String, u64> {
        self.by_stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, feed)| feed.subscribers() > 0)
            .map(|(stream, feed)| (stream.clone(), feed.subscribers() as u64))
            .collect()
    }

    /// Forgets the feeds nobody listens to, and has the others give back their old
    /// entries. Also after each retention pass: a feed nobody followed must not answer a
    /// new subscriber from entries that retention has dropped since (the store tells it
    /// with a reset).
    pub fn sweep(&self) {
        let forgotten = {
            let mut by_stream = self
                .by_stream
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let before = by_stream.len();
            by_stream.retain(|_, feed| feed.subscribers() > 0);
            let len = by_stream.len();
            if by_stream.capacity() > 4 * len.max(16) {
                by_stream.shrink_to(2 * len);
            }
            before - len
        };
        for feed in self.feeds() {
            feed.trim();
        }
        // What the forgotten streams' connections held (their requests, the overviews
        // that listed them) is freed over the following moments: the next sweeps trim too.
        if forgotten > 0 {
            self.trims_owed
                .store(TRIMS_AFTER_FORGETTING, Ordering::Relaxed);
        }
        let owed = self.trims_owed.load(Ordering::Relaxed);
        if owed > 0 {
            self.trims_owed.store(owed - 1, Ordering::Relaxed);
            give_back_memory();
        }
    }
}

/// How many sweeps give memory back after one that forgot feeds: with one, a flood of
/// made-up names polled by the overview left 15 % of the baseline behind on Redis, freed
/// after that sweep.
const TRIMS_AFTER_FORGETTING: u8 = 3;

/// Hands the memory that the allocator holds free back to the system. glibc keeps what a
/// burst of connections freed (a flood of 1,000 connections naming 16 made-up streams
/// each left the process 43 MB larger after they closed, with every feed gone); this
/// gives it back. Elsewhere a no-op: other allocators return memory by themselves.
fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Sweeps `channels` every [`SWEEP`] until they are gone.
async fn sweep(channels: Weak<Channels>) {
    let mut interval = tokio::time::interval(SWEEP);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(channels) = channels.upgrade() else {
            return;
        };
        channels.sweep();
    }
}

//! The live channel of each stream with subscribers on this instance: made on the first
//! subscriber, fed by the writer (a local store) or the stream's follower (a shared one),
//! and forgotten when nobody listens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;

use super::feed::{Feed, Live};
use crate::store::{Entry, EventId};

/// Entries of each stream with subscribers kept in memory, for subscribers that fall
/// behind their buffer to catch up from (see [`Feed`]).
pub const RECENT_PER_STREAM: usize = 4096;

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

/// The live channel of each stream that has subscribers (or had them recently).
pub struct Channels {
    by_stream: Mutex<HashMap<String, Arc<Feed>>>,
    /// Capacity of each channel: how far a subscriber may fall behind before it catches
    /// up from the feed's recent entries or the store.
    buffer: usize,
}

impl Channels {
    /// No channels yet; each will hold `buffer` entries (at least one).
    pub fn new(buffer: usize) -> Self {
        Self {
            by_stream: Mutex::default(),
            buffer: buffer.max(1),
        }
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
    /// that [`Channels::drop_idle`] cannot drop the feed between lookup and join.
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
            let feed = Arc::new(Feed::new(self.buffer, RECENT_PER_STREAM, through));
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

    /// Whether `feed` is still `stream`'s feed and has subscribers; when it has none, it
    /// is forgotten here, under the lock, so that the next subscriber makes a new one
    /// (with a new follower).
    pub fn still_followed(&self, stream: &str, feed: &Arc<Feed>) -> bool {
        let mut by_stream = self
            .by_stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match by_stream.get(stream) {
            Some(current) if Arc::ptr_eq(current, feed) => {
                if feed.subscribers() > 0 {
                    return true;
                }
                by_stream.remove(stream);
                false
            }
            _ => false,
        }
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

    /// Forgets channels nobody listens to.
    pub fn drop_idle(&self) {
        self.by_stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, feed| feed.subscribers() > 0);
    }
}

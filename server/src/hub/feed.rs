//! One stream's live feed: the broadcast channel its subscribers listen to, and its most
//! recent entries kept in memory.
//!
//! A subscriber that falls more than its buffer behind the channel catches up from the
//! recent entries when they still cover its position, and from the store only when they
//! do not. Without them, a burst that outran a thousand subscribers sent every one of them
//! to the store at once, each re-reading the same pages through one SQLite connection:
//! the catch-up itself then fell behind (seconds of latency in the fan-out benchmark).
//! The recent entries are shared by all subscribers, and cost memory only for entries
//! that were published while the stream had subscribers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;

use crate::store::{Entry, EventId};

/// What a stream's live channel carries.
#[derive(Debug, Clone)]
pub enum Live {
    /// A newly stored entry, in id order.
    Entry(Arc<Entry>),
    /// Entries were dropped before they could be sent (see the hub's followers): each
    /// subscriber goes back to the store, which knows whether it lost any.
    Gap,
}

/// A stream's channel and recent entries. Fed by one task at a time (the writer, or the
/// stream's follower), in id order.
pub struct Feed {
    tx: broadcast::Sender<Live>,
    /// The newest entries sent, oldest first, without holes: every entry sent since the
    /// oldest one here is here.
    recent: Mutex<VecDeque<Arc<Entry>>>,
    /// How many entries `recent` keeps.
    keep: usize,
}

impl Feed {
    /// A feed whose subscribers may fall `buffer` entries behind the channel, and catch
    /// up in memory while they are fewer than `keep` behind.
    pub fn new(buffer: usize, keep: usize) -> Self {
        Self {
            tx: broadcast::channel(buffer.max(1)).0,
            recent: Mutex::default(),
            keep,
        }
    }

    /// Sends `entry` to the subscribers, and keeps it among the recent entries.
    pub fn send(&self, entry: Arc<Entry>) {
        {
            let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
            recent.push_back(entry.clone());
            if recent.len() > self.keep {
                recent.pop_front();
            }
        }
        // No receiver is fine: nobody listens right now.
        let _ = self.tx.send(Live::Entry(entry));
    }

    /// Tells the subscribers that entries were lost before they could be sent: the recent
    /// entries no longer follow on without a hole, so they are forgotten, and every
    /// subscriber goes back to the store.
    pub fn gap(&self) {
        self.recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let _ = self.tx.send(Live::Gap);
    }

    /// The entries after `cursor`, oldest first, at most `limit`, when `cursor` lies
    /// within the recent entries (so they hold every entry sent after it); `None` when the
    /// store must answer, also for a position past the newest entry, which only the store
    /// can tell from one it never issued.
    pub fn recent_after(&self, cursor: EventId, limit: usize) -> Option<Vec<Arc<Entry>>> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if cursor < recent.front()?.id || cursor > recent.back()?.id {
            return None;
        }
        let first = recent.partition_point(|entry| entry.id <= cursor);
        Some(recent.range(first..).take(limit).cloned().collect())
    }

    /// A new receiver of the channel.
    pub fn subscribe(&self) -> broadcast::Receiver<Live> {
        self.tx.subscribe()
    }

    /// How many subscribers listen.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::{Level, Notification};

    fn entry(id: u64) -> Arc<Entry> {
        Entry::new(
            EventId::new(id, 0),
            Notification {
                id: id.to_string(),
                stream: "s".into(),
                title: String::new(),
                body: String::new(),
                level: Level::Info,
                created_at: String::new(),
            },
        )
    }

    fn ids(entries: Option<Vec<Arc<Entry>>>) -> Option<Vec<u64>> {
        entries.map(|e| e.iter().map(|e| e.id.major).collect())
    }

    #[test]
    fn recent_entries_answer_only_positions_they_cover() {
        let feed = Feed::new(4, 3);
        assert_eq!(ids(feed.recent_after(EventId::new(0, 0), 10)), None);
        for id in [10, 20, 30, 40] {
            feed.send(entry(id));
        }
        // 10 went (3 are kept): from 20 on, memory covers it; before, the store must.
        assert_eq!(
            ids(feed.recent_after(EventId::new(20, 0), 10)),
            Some(vec![30, 40])
        );
        assert_eq!(
            ids(feed.recent_after(EventId::new(25, 0), 1)),
            Some(vec![30])
        );
        assert_eq!(
            ids(feed.recent_after(EventId::new(40, 0), 10)),
            Some(vec![])
        );
        assert_eq!(ids(feed.recent_after(EventId::new(10, 0), 10)), None);
        feed.gap();
        assert_eq!(ids(feed.recent_after(EventId::new(40, 0), 10)), None);
    }
}

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
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

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
    recent: Mutex<Recent>,
    /// How many entries `recent` keeps.
    keep: usize,
}

/// What a feed has sent: its newest entries, and the span of positions they tell all
/// that follows of.
struct Recent {
    /// The newest entries sent, oldest first, without holes: every entry sent since the
    /// oldest one here is here.
    entries: VecDeque<Arc<Entry>>,
    /// The oldest position whose following entries are all in `entries`: where the feed
    /// started (a follower's start, or a local store's first entry sent), where a gap
    /// left it, or the newest entry dropped to keep the count.
    floor: Option<EventId>,
    /// The position after which the feed has sent nothing yet, though it will send every
    /// entry stored after it: the newest entry sent, or where the stream's follower
    /// started reading. `None` until known (a local store's feed before its first entry).
    through: Option<EventId>,
}

impl Feed {
    /// A feed whose subscribers may fall `buffer` entries behind the channel, and catch
    /// up in memory while they are fewer than `keep` behind. `through` is where it stands
    /// (see [`Feed::join`]), when known: a follower's starting position.
    pub fn new(buffer: usize, keep: usize, through: Option<EventId>) -> Self {
        Self {
            tx: broadcast::channel(buffer.max(1)).0,
            recent: Mutex::new(Recent {
                entries: VecDeque::new(),
                floor: through,
                through,
            }),
            keep,
        }
    }

    /// The recent entries, locked.
    fn recent(&self) -> MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `entry` to the subscribers, and keeps it among the recent entries.
    pub fn send(&self, entry: Arc<Entry>) {
        {
            let mut recent = self.recent();
            recent.floor.get_or_insert(entry.id);
            recent.through = Some(entry.id);
            recent.entries.push_back(entry.clone());
            if recent.entries.len() > self.keep {
                recent.floor = recent.entries.pop_front().map(|dropped| dropped.id);
            }
        }
        // No receiver is fine: nobody listens right now.
        let _ = self.tx.send(Live::Entry(entry));
    }

    /// Tells the subscribers that entries were lost before they could be sent, and that
    /// the feed goes on after `through`: the recent entries no longer follow on without a
    /// hole, so they are forgotten, and every subscriber behind `through` goes back to the
    /// store.
    pub fn gap(&self, through: EventId) {
        {
            let mut recent = self.recent();
            recent.entries.clear();
            recent.floor = Some(through);
            recent.through = Some(through);
        }
        let _ = self.tx.send(Live::Gap);
    }

    /// The entries after `cursor`, oldest first, at most `limit`, when the feed can tell
    /// them all: `cursor` lies between its floor and where it stands (then with no
    /// entries). `None` when the store must answer, also for a position past where the
    /// feed stands, which only the store can tell from one it never issued.
    pub fn recent_after(&self, cursor: EventId, limit: usize) -> Option<Vec<Arc<Entry>>> {
        let recent = self.recent();
        if cursor < recent.floor? || cursor > recent.through? {
            return None;
        }
        let first = recent.entries.partition_point(|entry| entry.id <= cursor);
        Some(recent.entries.range(first..).take(limit).cloned().collect())
    }

    /// A new receiver of the channel, and where the feed stands: a subscriber without a
    /// position of its own that starts there misses nothing and is sent nothing twice, and
    /// needs no read of the store. Both under one lock, so that an entry sent meanwhile is
    /// either at or before that position or in the receiver.
    pub fn join(&self) -> (broadcast::Receiver<Live>, Option<EventId>) {
        let recent = self.recent();
        (self.tx.subscribe(), recent.through)
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
        let feed = Feed::new(4, 3, None);
        assert_eq!(ids(feed.recent_after(EventId::new(0, 0), 10)), None);
        for id in [10, 20, 30, 40] {
            feed.send(entry(id));
        }
        // 10 went (3 are kept): from 10 on, memory covers it; before, the store must.
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
        assert_eq!(
            ids(feed.recent_after(EventId::new(10, 0), 10)),
            Some(vec![20, 30, 40])
        );
        assert_eq!(ids(feed.recent_after(EventId::new(9, 0), 10)), None);
        assert_eq!(ids(feed.recent_after(EventId::new(41, 0), 10)), None);
        feed.gap(EventId::new(50, 0));
        assert_eq!(ids(feed.recent_after(EventId::new(40, 0), 10)), None);
        assert_eq!(
            ids(feed.recent_after(EventId::new(50, 0), 10)),
            Some(vec![])
        );
    }

    #[test]
    fn a_follower_s_feed_stands_where_it_started_until_it_sends() {
        let feed = Feed::new(4, 3, Some(EventId::new(7, 0)));
        let (mut live, through) = feed.join();
        assert_eq!(through, Some(EventId::new(7, 0)));
        // Where the feed stands needs no store; a position before or past it does.
        assert_eq!(ids(feed.recent_after(EventId::new(7, 0), 10)), Some(vec![]));
        assert_eq!(ids(feed.recent_after(EventId::new(6, 0), 10)), None);
        assert_eq!(ids(feed.recent_after(EventId::new(8, 0), 10)), None);
        feed.send(entry(9));
        assert!(matches!(live.try_recv(), Ok(Live::Entry(e)) if e.id.major == 9));
        assert_eq!(feed.join().1, Some(EventId::new(9, 0)));
        assert_eq!(
            ids(feed.recent_after(EventId::new(7, 0), 10)),
            Some(vec![9])
        );
    }
}

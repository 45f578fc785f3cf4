//! One stream's live feed: a small broadcast channel that wakes its subscribers, and the
//! stream's most recent entries kept in memory, which a subscriber behind the channel
//! catches up from.
//!
//! What a feed costs is what is live, not the name: the channel holds [`LIVE_WINDOW`]
//! entries whatever `--subscriber-buffer` says (a channel of 1,024 slots allocated up front
//! was 46.8 KB per stream, so a stream per user cost nine times a shared stream's
//! subscriber); the recent entries are only those published while the stream had
//! subscribers here, at most `keep` of them and none older than [`RECENT_FOR`]. A
//! subscriber that falls more than the window behind catches up from the recent entries
//! when they still cover its position, and from the store only when they do not. Without
//! them, a burst that outran a thousand subscribers sent every one of them to the store at
//! once, each re-reading the same pages through one SQLite connection: the catch-up itself
//! then fell behind (seconds of latency in the fan-out benchmark).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::store::{Entry, EventId};

/// Slots of a feed's channel: how far a subscriber may fall behind the newest entry before
/// it reads the recent entries instead. A slot is about 48 bytes, allocated with the feed.
pub const LIVE_WINDOW: usize = 16;

/// How long a feed keeps an entry for subscribers that fell behind: a subscriber further
/// behind than that reads the store. The send timeout cuts a reader that stopped well
/// before this matters for memory; a stream that went quiet gives its entries back at the
/// next sweep (see `Channels::sweep`).
pub const RECENT_FOR: Duration = Duration::from_secs(30);

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
/// hub's follower of a shared store), in id order.
pub struct Feed {
    tx: broadcast::Sender<Live>,
    recent: Mutex<Recent>,
    /// How many entries `recent` keeps at most.
    keep: usize,
}

/// What a feed has sent: its newest entries, and the span of positions they tell all
/// that follows of.
struct Recent {
    /// The newest entries sent, oldest first, with when they were sent, without holes:
    /// every entry sent since the oldest one here is here.
    entries: VecDeque<(Instant, Arc<Entry>)>,
    /// The oldest position whose following entries are all in `entries`: where the feed
    /// started (the stream's head when the follower's feed was made, or a local store's
    /// first entry sent), where a gap left it, or the newest entry dropped to keep the
    /// count or the age.
    floor: Option<EventId>,
    /// The position after which the feed has sent nothing yet, though it will send every
    /// entry stored after it: the newest entry sent, or the stream's head when the feed
    /// was made. `None` until known (a local store's feed before its first entry, a feed
    /// after its follower lost track).
    through: Option<EventId>,
    /// Whether entries were ever lost before they could be sent: then a head read
    /// before the loss no longer tells where the feed stands (see [`Feed::stand_at`]).
    gapped: bool,
}

impl Recent {
    /// Drops the entries past the count `keep` or older than [`RECENT_FOR`] at `now`.
    fn trim(&mut self, keep: usize, now: Instant) {
        while let Some((sent, entry)) = self.entries.front() {
            if self.entries.len() <= keep && now.duration_since(*sent) < RECENT_FOR {
                break;
            }
            self.floor = Some(entry.id);
            self.entries.pop_front();
        }
    }
}

impl Feed {
    /// A feed whose subscribers catch up in memory while they are fewer than `keep`
    /// entries behind. `through` is where it stands (see [`Feed::join`]), when known.
    pub fn new(keep: usize, through: Option<EventId>) -> Self {
        Self {
            tx: broadcast::channel(LIVE_WINDOW).0,
            recent: Mutex::new(Recent {
                entries: VecDeque::new(),
                floor: through,
                through,
                gapped: false,
            }),
            keep: keep.max(1),
        }
    }

    /// The recent entries, locked.
    fn recent(&self) -> MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `entry` to the subscribers, and keeps it among the recent entries unless it
    /// lies at or before where the feed stands (see [`Feed::stand_at`]). Such an entry
    /// still goes to the subscribers: one that joined before the stream's head was read,
    /// with a position of its own, may have read the store before the entry was stored,
    /// and needs it from the channel (each subscriber skips what it has delivered). Held
    /// back, it was lost to them: a subscriber of an instance on Redis missed the first
    /// notification after its `Last-Event-ID` in one run of two.
    pub fn send(&self, entry: Arc<Entry>) {
        {
            let mut recent = self.recent();
            if recent.through.is_none_or(|through| entry.id > through) {
                recent.floor.get_or_insert(entry.id);
                recent.through = Some(entry.id);
                let now = Instant::now();
                recent.entries.push_back((now, entry.clone()));
                recent.trim(self.keep, now);
            }
        }
        // No receiver is fine: nobody listens right now.
        let _ = self.tx.send(Live::Entry(entry));
    }

    /// Where a feed made before its stream's head was read stands: at `head`, read after
    /// the feed was made, so that every entry after it reaches the feed. Entries sent
    /// meanwhile at or before it are dropped. Nothing changes after a gap.
    pub fn stand_at(&self, head: EventId) {
        let mut recent = self.recent();
        if recent.gapped {
            return;
        }
        while recent.entries.front().is_some_and(|(_, e)| e.id <= head) {
            recent.entries.pop_front();
        }
        recent.floor = Some(head);
        recent.through = Some(recent.through.map_or(head, |through| through.max(head)));
    }

    /// Tells the subscribers that entries were lost before they could be sent, and that
    /// the feed goes on after `through` (`None`: from an unknown point): the recent entries
    /// no longer follow on without a hole, so they are forgotten, and every subscriber
    /// goes back to the store.
    pub fn gap(&self, through: Option<EventId>) {
        {
            let mut recent = self.recent();
            recent.entries.clear();
            recent.floor = through;
            recent.through = through;
            recent.gapped = true;
        }
        let _ = self.tx.send(Live::Gap);
    }

    /// Gives back what a quiet feed holds: the entries past their age, and the room the
    /// recent entries no longer use.
    pub fn trim(&self) {
        let mut recent = self.recent();
        recent.trim(self.keep, Instant::now());
        let len = recent.entries.len();
        if recent.entries.capacity() > 4 * len.max(8) {
            recent.entries.shrink_to(2 * len);
        }
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
        let first = recent
            .entries
            .partition_point(|(_, entry)| entry.id <= cursor);
        Some(
            (recent.entries.range(first..).take(limit))
                .map(|(_, entry)| entry.clone())
                .collect(),
        )
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
        let feed = Feed::new(3, None);
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
        feed.gap(Some(EventId::new(50, 0)));
        assert_eq!(ids(feed.recent_after(EventId::new(40, 0), 10)), None);
        assert_eq!(
            ids(feed.recent_after(EventId::new(50, 0), 10)),
            Some(vec![])
        );
    }

    #[test]
    fn a_follower_s_feed_stands_where_it_started_until_it_sends() {
        let feed = Feed::new(3, Some(EventId::new(7, 0)));
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

    #[test]
    fn a_feed_made_before_its_head_was_read_stands_at_that_head() {
        let feed = Feed::new(8, None);
        assert_eq!(feed.join().1, None);
        // The follower sent these between the feed's making and the head's read.
        feed.send(entry(5));
        feed.send(entry(12));
        feed.stand_at(EventId::new(10, 0));
        assert_eq!(feed.join().1, Some(EventId::new(12, 0)));
        assert_eq!(
            ids(feed.recent_after(EventId::new(10, 0), 10)),
            Some(vec![12])
        );
        assert_eq!(ids(feed.recent_after(EventId::new(9, 0), 10)), None);
        // An entry at or before where it stands still reaches the subscribers (one may
        // need it), but not the recent entries.
        let (mut live, _) = feed.join();
        feed.send(entry(11));
        feed.send(entry(13));
        assert!(matches!(live.try_recv(), Ok(Live::Entry(e)) if e.id.major == 11));
        assert!(matches!(live.try_recv(), Ok(Live::Entry(e)) if e.id.major == 13));
        assert_eq!(
            ids(feed.recent_after(EventId::new(10, 0), 10)),
            Some(vec![12, 13])
        );
        // After a gap, a head read before it says nothing.
        feed.gap(None);
        feed.stand_at(EventId::new(20, 0));
        assert_eq!(feed.join().1, None);
    }

    #[test]
    fn recent_entries_go_with_their_age_and_their_count() {
        let feed = Feed::new(3, None);
        for id in 1..=5 {
            feed.send(entry(id));
        }
        assert_eq!(
            ids(feed.recent_after(EventId::new(2, 0), 10)),
            Some(vec![3, 4, 5])
        );
        let later = Instant::now() + RECENT_FOR;
        feed.recent().trim(feed.keep, later);
        assert_eq!(ids(feed.recent_after(EventId::new(4, 0), 10)), None);
        assert_eq!(ids(feed.recent_after(EventId::new(5, 0), 10)), Some(vec![]));
    }
}

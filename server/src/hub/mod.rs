//! Where streams fan out: the hub owns the store and the live channels, and every read or
//! write of notifications goes through it (publish, subscribe, history, retention).
//!
//! Publishing is group commit (`writer.rs`): publishes queue for one writer task, which
//! stores every publish waiting at that moment in one transaction (one disk flush for the
//! batch). A publisher is answered once its entry is stored. The live channels
//! (`channels.rs`) are fed in one of two ways, by the store:
//!
//! - **Local** (SQLite): the writer sends the stored entries to their streams' channels,
//!   in id order; one that hangs up after queueing cannot leave an entry stored but
//!   never sent.
//! - **Followed** (a store shared by instances,
//!   [`SharedStore`](crate::store::SharedStore)): other instances append too, so each
//!   stream with subscribers here has one follower task (`follower.rs`) that reads the store after the
//!   last id it saw and sends what it reads. It starts from the stream's head read before
//!   its first subscriber joined, keeps its position across store outages (retrying with
//!   backoff), and ends when the stream has no subscribers left.
//!
//! How a subscriber switches from stored history to live entries without a gap or a
//! duplicate is [`Subscription`]'s job; it is the same with both.

mod activity;
mod channels;
mod directory;
mod feed;
mod follower;
mod position;
mod selected;
mod subscription;
mod writer;

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use common::{Selection, StreamSummary};
use futures::future::Either;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::store::{Draft, Entry, Error, EventId, Page, Retention, Store};
use activity::Activity;
use channels::Channels;
use directory::Directory;
use writer::{Publish, Writer};

pub use feed::Live;
pub use position::Position;
pub use selected::{Event, MayRead, Selected};
pub use subscription::{Delivery, Subscription};

/// The fan-out hub. One per server; shared by all handlers.
pub struct Hub {
    store: Arc<dyn Store>,
    channels: Arc<Channels>,
    directory: Arc<Directory>,
    activity: Arc<Activity>,
    publishes: mpsc::Sender<Publish>,
    heartbeat: Arc<watch::Sender<()>>,
    /// A heartbeat that never beats, for the streams of a subscriber of several.
    quiet: watch::Sender<()>,
    /// The last overview and when it was made (see [`Hub::overview`]).
    overview: tokio::sync::Mutex<Option<(Instant, Arc<Vec<StreamSummary>>)>>,
}

impl Hub {
    /// A hub over `store` whose subscribers get a heartbeat every `heartbeat` and may fall
    /// `buffer` entries behind the live stream before they catch up from the store.
    pub fn new(store: Arc<dyn Store>, heartbeat: Duration, buffer: usize) -> Arc<Self> {
        let (tx, _) = watch::channel(());
        let tx = Arc::new(tx);
        tokio::spawn(beat(Arc::downgrade(&tx), heartbeat));
        let channels = Channels::new(buffer);
        let activity = Arc::new(Activity::default());
        let directory = Directory::new(store.clone());
        if store.shared().is_some() {
            tokio::spawn(follower::run(
                store.clone(),
                Arc::downgrade(&channels),
                Arc::downgrade(&directory),
            ));
        }
        let (publishes, queue) = mpsc::channel(writer::QUEUE);
        tokio::spawn(writer::write_batches(
            Writer {
                store: store.clone(),
                channels: channels.clone(),
                directory: directory.clone(),
                activity: activity.clone(),
            },
            queue,
        ));
        Arc::new(Self {
            store,
            channels,
            directory,
            activity,
            publishes,
            heartbeat: tx,
            quiet: watch::channel(()).0,
            overview: tokio::sync::Mutex::default(),
        })
    }

    /// Stores `draft` (durably, in a batch with whatever else is being published), then
    /// sends it to the live subscribers of its stream.
    pub async fn publish(&self, draft: Draft) -> Result<Arc<Entry>, Error> {
        let (done, outcome) = oneshot::channel();
        self.publishes
            .send(Publish {
                draft,
                received: Instant::now(),
                done,
            })
            .await
            .map_err(|_| anyhow!("the hub's writer has stopped"))?;
        outcome
            .await
            .map_err(|_| anyhow!("the hub's writer has stopped"))?
    }

    /// A subscriber of `stream` that has seen everything up to `after` (`None`: a new
    /// subscriber, which gets what is published from now on; when the stream's feed here
    /// is a moment behind the store, also what was stored in that moment).
    pub async fn subscribe(
        &self,
        stream: &str,
        after: Option<EventId>,
    ) -> Result<Subscription, Error> {
        let replay = Arc::new(Semaphore::new(1));
        self.subscribe_with(stream, after, self.heartbeat.subscribe(), replay)
            .await
    }

    /// [`Hub::subscribe`], with heartbeats from `heartbeat` (a subscriber of several
    /// streams takes them once for all, and gives each of its streams none), reading the
    /// store while it holds a permit of `replay` (one per connection, see [`Subscription`]).
    ///
    /// A stream with subscribers here already has a feed that knows where it stands, so a
    /// new subscriber joins it at that position without reading the store, and its first
    /// catch-up is answered from memory: a crowd that connects at once (after a deploy, a
    /// network blip) costs the store nothing per subscriber, and a store that is away
    /// does not keep it out. Before, each join ran two scripts in Redis (five commands);
    /// in workload I of the benchmark (100,000 joins on six instances) some of them ran
    /// past their deadline and the subscriber got a `503`. Only a stream new here (or a
    /// local store's feed before its first entry) reads the store's head.
    async fn subscribe_with(
        &self,
        stream: &str,
        after: Option<EventId>,
        heartbeat: watch::Receiver<()>,
        replay: Arc<Semaphore>,
    ) -> Result<Subscription, Error> {
        // Joined before the first read of the store: see `Subscription`.
        let (joined, cursor) = match self.channels.join_existing(stream) {
            Some(joined) => {
                let cursor = match after.or(joined.through) {
                    Some(cursor) => cursor,
                    None => self.store.head(stream).await?,
                };
                (joined, cursor)
            }
            None => self.join_new(stream, after).await?,
        };
        Ok(Subscription::new(
            self.store.clone(),
            stream.to_owned(),
            cursor,
            (joined.feed, joined.live),
            heartbeat,
            replay,
        ))
    }

    /// Joins the feed of `stream`, which had none here a moment ago, making it; returns
    /// it and where a subscriber that has seen everything up to `after` starts.
    ///
    /// With a shared store the feed is made first and the stream's head read after: the
    /// hub's follower sends the feed every entry it reads from then on, so every entry
    /// after that head reaches the feed, which stands there (see [`Feed::stand_at`]).
    async fn join_new(
        &self,
        stream: &str,
        after: Option<EventId>,
    ) -> Result<(channels::Joined, EventId), Error> {
        let mut made = false;
        let joined = self.channels.join(stream, None, |_| made = true);
        if let Some(after) = after.filter(|_| self.store.shared().is_none()) {
            return Ok((joined, after));
        }
        let head = self.store.head(stream).await?;
        // A feed another subscriber made meanwhile may stand further on already.
        if made && self.store.shared().is_some() {
            joined.feed.stand_at(head);
        }
        Ok((joined, after.unwrap_or(head)))
    }

    /// The streams `selection` covers now, of those `may_read` lets through: the ones it
    /// names, and the known ones its patterns match (see `directory.rs`).
    pub fn covered(&self, selection: &Selection, may_read: &MayRead) -> Vec<String> {
        let mut streams: Vec<String> = selection.streams().map(str::to_owned).collect();
        if selection.has_patterns() {
            let names = self.directory.watch().borrow().clone();
            streams.extend(
                (names.iter())
                    .filter(|name| selection.matches(name) && may_read(name))
                    .filter(|name| !selection.streams().any(|named| named == name.as_str()))
                    .cloned(),
            );
        }
        streams
    }

    /// A subscriber of `streams` (what `selection` covers now, see [`Hub::covered`]) and
    /// of the streams its patterns match later, that has seen everything up to `after`
    /// (`None`: a new subscriber, which gets what is published from now on).
    ///
    /// One named stream alone is followed by its [`Subscription`] directly (see
    /// [`selected::alone`]): no position to keep, no set of streams to merge. Measured
    /// against a [`Selected`] of one, same run: 19.4-19.5 against 20.1 KiB per idle
    /// subscriber (benchmark E, 10,000), 10.6 against 12.3 s of server CPU at 10,000 × 20/s
    /// (benchmark B).
    pub async fn subscribe_to(
        self: &Arc<Self>,
        selection: Selection,
        streams: Vec<String>,
        after: Option<Position>,
        may_read: MayRead,
    ) -> Result<impl futures::Stream<Item = Event> + Send + 'static, Error> {
        if let Some(stream) = selection.single() {
            let after = after.map(|position| position.cursor(stream));
            let subscription = self.subscribe(stream, after).await?;
            return Ok(Either::Left(selected::alone(subscription)));
        }
        let position = match after {
            None => Position::at(self.store.clock().await?),
            Some(position) => position.for_several(
                |id| self.store.everywhere(id),
                self.store.clock().await?,
                &streams,
            ),
        };
        let selected = Selected::new(self, selection, streams, position, may_read).await?;
        Ok(Either::Right(selected.into_stream()))
    }

    /// Stored entries of `stream` after `after`, oldest first, at most `limit`.
    pub async fn history_after(
        &self,
        stream: &str,
        after: EventId,
        limit: usize,
    ) -> Result<Page, Error> {
        self.store.after(stream, after, limit).await
    }

    /// The position of a subscriber of `stream` that has seen everything stored so far
    /// (see [`Store::head`]).
    pub async fn head(&self, stream: &str) -> Result<EventId, Error> {
        self.store.head(stream).await
    }

    /// The newest `limit` stored entries of `stream`, oldest first.
    pub async fn latest(&self, stream: &str, limit: usize) -> Result<Vec<Arc<Entry>>, Error> {
        self.store.latest(stream, limit).await
    }

    /// The newest `limit` stored entries of all `streams` together, oldest first, and the
    /// position of a subscriber of them all that has seen these (its `Last-Event-ID`).
    ///
    /// The clock is read first, so whatever is stored after it is either listed or
    /// replayed from the position. A stream moves past the clock to its newest listed
    /// entry only when no entry newer than the clock was left out of the page: then all of
    /// its entries up to that one are listed.
    pub async fn latest_of(
        &self,
        streams: &[String],
        limit: usize,
    ) -> Result<(Vec<Arc<Entry>>, Position), Error> {
        let clock = self.store.clock().await?;
        let mut entries = Vec::new();
        for stream in streams {
            entries.extend(self.store.latest(stream, limit).await?);
        }
        entries.sort_by_key(|entry| entry.id);
        let left_out = entries.len().saturating_sub(limit);
        let newest_left_out = left_out.checked_sub(1).map(|n| entries[n].id);
        let page = entries.split_off(left_out);
        let mut position = Position::at(clock);
        if newest_left_out.is_none_or(|id| id <= clock) {
            for entry in page.iter().filter(|entry| entry.id > clock) {
                position.advance(&entry.notification.stream, entry.id);
            }
        }
        Ok((page, position))
    }

    /// Whether `holder` may run the job `name` for the next `ttl` (see [`Store::lead`]).
    pub async fn lead(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, Error> {
        self.store.lead(name, holder, ttl).await
    }

    /// Why the store cannot take publishes right now (a full disk, a read-only file,
    /// Redis unreachable), or `None` while it works.
    pub fn store_problem(&self) -> Option<String> {
        self.store.problem()
    }

    /// Every stream that has stored entries, subscribers or publishes in the last minute,
    /// by name, with its figures: made at most once per [`common::OVERVIEW_MAX_AGE`] for every caller
    /// (the pages that watch it, `/metrics`), who wait for the one being made.
    pub async fn overview(&self) -> Result<Arc<Vec<StreamSummary>>, Error> {
        let mut cached = self.overview.lock().await;
        if let Some((made, streams)) = cached.as_ref() {
            if made.elapsed() < common::OVERVIEW_MAX_AGE {
                return Ok(streams.clone());
            }
        }
        let streams = Arc::new(self.make_overview().await?);
        *cached = Some((Instant::now(), streams.clone()));
        Ok(streams)
    }

    /// The overview, made now.
    async fn make_overview(&self) -> Result<Vec<StreamSummary>, Error> {
        let stored = self.store.streams().await?;
        let subscribers = self.channels.subscribers();
        let mut rates = self.activity.per_second();
        let mut streams = BTreeMap::new();
        let names: Vec<String> = (stored.iter().map(|s| s.stream.clone()))
            .chain(subscribers.keys().cloned())
            .chain(rates.keys().cloned())
            .collect();
        for name in names {
            streams
                .entry(name.clone())
                .or_insert_with(|| StreamSummary {
                    subscribers: subscribers.get(&name).copied().unwrap_or_default(),
                    publishes_per_second: rates
                        .remove(&name)
                        .unwrap_or_else(|| vec![0; activity::WINDOW_SECS]),
                    name,
                    stored: 0,
                    newest_id: None,
                    newest_at: None,
                    publishes_last_minute: 0,
                });
        }
        for stream in stored {
            if let Some(summary) = streams.get_mut(&stream.stream) {
                summary.stored = stream.count;
                summary.newest_id = Some(stream.newest.notification.id.clone());
                summary.newest_at = Some(stream.newest.notification.created_at.clone());
            }
        }
        Ok(streams
            .into_values()
            .map(|mut summary| {
                summary.publishes_last_minute = summary
                    .publishes_per_second
                    .iter()
                    .map(|&n| u64::from(n))
                    .sum();
                summary
            })
            .collect())
    }

    /// Applies `retention` every `every` until `shutdown`, then sweeps the feeds (see
    /// `Channels::sweep`).
    pub async fn apply_retention(
        &self,
        retention: Retention,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        let mut interval = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                () = shutdown.cancelled() => return,
            }
            match self.store.prune(&retention).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!("retention dropped {n} notifications"),
                Err(err) => tracing::warn!("retention failed: {err:#}"),
            }
            self.channels.sweep();
        }
    }
}

/// Ticks the heartbeat every `every` until the hub is gone.
async fn beat(tx: Weak<watch::Sender<()>>, every: Duration) {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        let Some(tx) = tx.upgrade() else { return };
        tx.send_replace(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use common::Level;
    use futures::StreamExt;

    fn draft(title: String) -> Draft {
        Draft {
            stream: "s".into(),
            title,
            body: String::new(),
            level: Level::Info,
        }
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_catches_up_from_the_store_without_loss() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("hub.db")).unwrap());
        let hub = Hub::new(store, Duration::from_secs(3600), 2);
        let items = hub.subscribe("s", None).await.unwrap().into_stream();
        let mut published = Vec::new();
        for n in 0..20 {
            published.push(hub.publish(draft(n.to_string())).await.unwrap().id);
        }
        // Nobody read while 20 went out through a buffer of 2: the live channel lagged.
        let received: Vec<EventId> = items
            .filter_map(|item| async move {
                match item {
                    Delivery::Notification(entry) => Some(entry.id),
                    _ => None,
                }
            })
            .take(20)
            .collect()
            .await;
        assert_eq!(received, published);
    }

    #[tokio::test]
    async fn entries_pruned_before_a_subscriber_reads_them_give_a_reset_not_a_silent_gap() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("hub.db")).unwrap());
        let hub = Hub::new(store.clone(), Duration::from_secs(3600), 16);
        let mut ids = Vec::new();
        for n in 0..5 {
            ids.push(hub.publish(draft(n.to_string())).await.unwrap().id);
        }
        let mut items = hub.subscribe("s", Some(ids[0])).await.unwrap();
        store.prune(&Retention::new(Some(2), None)).await.unwrap();
        assert_eq!(items.next().await, Some(Delivery::Heartbeat));
        assert_eq!(items.next().await, Some(Delivery::Reset(ids[4])));
        let next = hub.publish(draft("after".into())).await.unwrap();
        assert_eq!(items.next().await, Some(Delivery::Notification(next)));
    }

    #[tokio::test]
    async fn a_publish_whose_caller_gives_up_still_reaches_subscribers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("hub.db")).unwrap());
        let hub = Hub::new(store, Duration::from_secs(3600), 16);
        let mut items = hub.subscribe("s", None).await.unwrap();
        assert_eq!(items.next().await, Some(Delivery::Heartbeat));
        {
            // Polled once (the publish has started), then dropped, as hyper drops the
            // handler of a client that hangs up.
            let publishing = hub.publish(draft("orphan".into()));
            futures::pin_mut!(publishing);
            assert!(futures::poll!(publishing.as_mut()).is_pending());
        }
        let Some(Delivery::Notification(entry)) = items.next().await else {
            panic!("the orphaned publish never arrived");
        };
        assert_eq!(entry.notification.title, "orphan");
    }

    #[tokio::test]
    async fn a_new_subscriber_of_a_stream_pruned_empty_gets_no_reset() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("hub.db")).unwrap());
        let hub = Hub::new(store.clone(), Duration::from_secs(3600), 16);
        for n in 0..3 {
            hub.publish(draft(n.to_string())).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let everything_old = Retention {
            max_age: Some(Duration::from_millis(10)),
            ..Retention::new(None, None)
        };
        assert_eq!(store.prune(&everything_old).await.unwrap(), 3);
        let mut items = hub.subscribe("s", None).await.unwrap();
        assert_eq!(items.next().await, Some(Delivery::Heartbeat));
        let next = hub.publish(draft("new".into())).await.unwrap();
        assert_eq!(items.next().await, Some(Delivery::Notification(next)));
    }
}

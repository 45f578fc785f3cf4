//! Where streams fan out: publishing to the store and to every live subscriber, and
//! subscribing with a gapless, duplicate-free switch from stored history to live events.
//!
//! Publishing holds one lock across "append to the store" and "send to subscribers", so
//! subscribers see entries in id order; it runs as a task of its own, so a publisher that
//! hangs up cannot leave an entry stored but never sent. A subscriber joins the live
//! channel *before* it replays from the store, so an entry published in between is in one
//! or both, never in neither; entries at or below the last id it delivered are skipped.
//! A subscriber too slow for the live channel (its bounded buffer overflowed) is not cut
//! off: it catches up from the store and carries on. Only retention can take entries away
//! from it; it is then told so with a reset.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use crate::store::{Draft, Entry, Error, EventId, Store};

/// Entries read from the store per query while replaying.
const REPLAY_PAGE: usize = 500;

/// What a subscriber receives, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A notification, replayed or live.
    Entry(Arc<Entry>),
    /// Entries after the subscriber's position were dropped by retention, or the position
    /// is unknown: it should reload history. Carries the id to resume after from now on.
    Reset(EventId),
    /// The periodic liveness signal; also the first item of every subscription.
    Heartbeat,
}

/// The fan-out hub. One per server; shared by all handlers.
pub struct Hub {
    store: Arc<dyn Store>,
    channels: Mutex<HashMap<String, broadcast::Sender<Arc<Entry>>>>,
    publishing: tokio::sync::Mutex<()>,
    heartbeat: Arc<watch::Sender<()>>,
    buffer: usize,
}

impl Hub {
    /// A hub over `store` whose subscribers get a heartbeat every `heartbeat` and may fall
    /// `buffer` entries behind the live stream before they catch up from the store.
    pub fn new(store: Arc<dyn Store>, heartbeat: Duration, buffer: usize) -> Arc<Self> {
        let (tx, _) = watch::channel(());
        let tx = Arc::new(tx);
        tokio::spawn(beat(Arc::downgrade(&tx), heartbeat));
        Arc::new(Self {
            store,
            channels: Mutex::default(),
            publishing: tokio::sync::Mutex::new(()),
            heartbeat: tx,
            buffer: buffer.max(1),
        })
    }

    /// The store behind this hub.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Stores `draft`, then sends it to the live subscribers of its stream.
    pub async fn publish(self: &Arc<Self>, draft: Draft) -> Result<Arc<Entry>, Error> {
        let hub = self.clone();
        // Its own task: if the caller is dropped mid-way, what was stored is still sent.
        tokio::spawn(async move {
            let _in_order = hub.publishing.lock().await;
            let entry = hub.store.append(draft).await?;
            // No receiver is fine: nobody listens to this stream right now.
            let _ = hub.sender(&entry.notification.stream).send(entry.clone());
            Ok(entry)
        })
        .await?
    }

    /// The items for a subscriber of `stream` that has seen everything up to `after`
    /// (`None`: a new subscriber, which gets only what is published from now on).
    pub async fn subscribe(
        &self,
        stream: &str,
        after: Option<EventId>,
    ) -> Result<impl Stream<Item = Item> + Send + 'static, Error> {
        let mut cursor = match after {
            Some(id) => id,
            // Start after the newest stored entry; the live channel (joined below) and the
            // first replay pass cover whatever is published from this point on.
            None => match self.store.latest(stream, 1).await?.pop() {
                Some(newest) => newest.id,
                None => EventId::default(),
            },
        };
        let mut live = self.receiver(stream);
        let mut heartbeat = self.heartbeat.subscribe();
        let store = self.store.clone();
        let stream = stream.to_owned();

        // A new subscriber has no history to lose: a reset on its first read (its stream
        // was pruned empty) only moves its position.
        let mut quiet_reset = after.is_none();

        Ok(async_stream::stream! {
            yield Item::Heartbeat;
            let mut replaying = true;
            loop {
                if replaying {
                    let page = match store.after(&stream, cursor, REPLAY_PAGE).await {
                        Ok(page) => page,
                        Err(err) => {
                            tracing::error!("replay of {stream} failed, closing the stream: {err:#}");
                            return;
                        }
                    };
                    if let Some(restart) = page.reset_to {
                        cursor = restart;
                        if !std::mem::take(&mut quiet_reset) {
                            yield Item::Reset(restart);
                        }
                        continue;
                    }
                    quiet_reset = false;
                    replaying = page.entries.len() == REPLAY_PAGE;
                    for entry in page.entries {
                        cursor = entry.id;
                        yield Item::Entry(entry);
                    }
                    continue;
                }
                tokio::select! {
                    received = live.recv() => match received {
                        Ok(entry) if entry.id > cursor => {
                            cursor = entry.id;
                            yield Item::Entry(entry);
                        }
                        Ok(_) => {}
                        Err(RecvError::Lagged(missed)) => {
                            tracing::debug!("a subscriber of {stream} fell {missed} behind; catching up from the store");
                            replaying = true;
                        }
                        Err(RecvError::Closed) => return,
                    },
                    changed = heartbeat.changed() => match changed {
                        Ok(()) => yield Item::Heartbeat,
                        Err(_) => return,
                    },
                }
            }
        })
    }

    /// Forgets channels nobody listens to (they are made again on the next use).
    pub fn drop_idle_channels(&self) {
        self.channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, tx| tx.receiver_count() > 0);
    }

    /// The sender of `stream`'s live channel, made on first use.
    fn sender(&self, stream: &str) -> broadcast::Sender<Arc<Entry>> {
        self.with_channel(stream, broadcast::Sender::clone)
    }

    /// A receiver of `stream`'s live channel. Made under the registry lock, so that
    /// [`Hub::drop_idle_channels`] cannot drop the channel between lookup and subscribe.
    fn receiver(&self, stream: &str) -> broadcast::Receiver<Arc<Entry>> {
        self.with_channel(stream, broadcast::Sender::subscribe)
    }

    fn with_channel<T>(
        &self,
        stream: &str,
        f: impl FnOnce(&broadcast::Sender<Arc<Entry>>) -> T,
    ) -> T {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        let sender = channels
            .entry(stream.to_owned())
            .or_insert_with(|| broadcast::channel(self.buffer).0);
        f(sender)
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
        let items = hub.subscribe("s", None).await.unwrap();
        let mut published = Vec::new();
        for n in 0..20 {
            published.push(hub.publish(draft(n.to_string())).await.unwrap().id);
        }
        // Nobody read while 20 went out through a buffer of 2: the live channel lagged.
        let received: Vec<EventId> = items
            .filter_map(|item| async move {
                match item {
                    Item::Entry(entry) => Some(entry.id),
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
        let mut items = Box::pin(hub.subscribe("s", Some(ids[0])).await.unwrap());
        let retention = crate::store::Retention {
            max_per_stream: Some(2),
            max_age: None,
            per_stream: vec![],
        };
        store.prune(&retention).await.unwrap();
        assert_eq!(items.next().await, Some(Item::Heartbeat));
        assert_eq!(items.next().await, Some(Item::Reset(ids[4])));
        let next = hub.publish(draft("after".into())).await.unwrap();
        assert_eq!(items.next().await, Some(Item::Entry(next)));
    }

    #[tokio::test]
    async fn a_publish_whose_caller_gives_up_still_reaches_subscribers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("hub.db")).unwrap());
        let hub = Hub::new(store, Duration::from_secs(3600), 16);
        let mut items = Box::pin(hub.subscribe("s", None).await.unwrap());
        assert_eq!(items.next().await, Some(Item::Heartbeat));
        {
            // Polled once (the publish has started), then dropped, as hyper drops the
            // handler of a client that hangs up.
            let publishing = hub.publish(draft("orphan".into()));
            futures::pin_mut!(publishing);
            assert!(futures::poll!(publishing.as_mut()).is_pending());
        }
        let Some(Item::Entry(entry)) = items.next().await else {
            panic!("the orphaned publish never arrived");
        };
        assert_eq!(entry.notification.title, "orphan");
    }
}

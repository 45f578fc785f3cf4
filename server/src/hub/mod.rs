//! Where streams fan out: the hub owns the store and the live channels, and every read or
//! write of notifications goes through it (publish, subscribe, history, retention).
//!
//! Publishing holds one lock across "append to the store" and "send to subscribers", so
//! subscribers see entries in id order; it runs as a task of its own, so a publisher that
//! hangs up cannot leave an entry stored but never sent. How a subscriber switches from
//! stored history to live entries without a gap or a duplicate is [`Subscription`]'s job.

mod subscription;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::store::{Draft, Entry, Error, EventId, Page, Retention, Store};

pub use subscription::{Delivery, Subscription};

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

    /// A subscriber of `stream` that has seen everything up to `after` (`None`: a new
    /// subscriber, which gets only what is published from now on).
    pub async fn subscribe(
        &self,
        stream: &str,
        after: Option<EventId>,
    ) -> Result<Subscription, Error> {
        let cursor = match after {
            Some(id) => id,
            None => self.store.head(stream).await?,
        };
        // Joined before the first read of the store: see `Subscription`.
        let live = self.receiver(stream);
        Ok(Subscription::new(
            self.store.clone(),
            stream.to_owned(),
            cursor,
            live,
            self.heartbeat.subscribe(),
        ))
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

    /// The newest `limit` stored entries of `stream`, oldest first.
    pub async fn latest(&self, stream: &str, limit: usize) -> Result<Vec<Arc<Entry>>, Error> {
        self.store.latest(stream, limit).await
    }

    /// Applies `retention` every `every` until `shutdown`, and forgets live channels nobody
    /// listens to (they are made again on the next use).
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
            self.channels
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|_, tx| tx.receiver_count() > 0);
        }
    }

    /// The sender of `stream`'s live channel, made on first use.
    fn sender(&self, stream: &str) -> broadcast::Sender<Arc<Entry>> {
        self.on_channel(stream, broadcast::Sender::clone)
    }

    /// A receiver of `stream`'s live channel. Made under the registry lock, so that the
    /// clean-up in [`Hub::apply_retention`] cannot drop the channel between lookup and
    /// subscribe.
    fn receiver(&self, stream: &str) -> broadcast::Receiver<Arc<Entry>> {
        self.on_channel(stream, broadcast::Sender::subscribe)
    }

    /// Runs `f` on `stream`'s channel (made if missing) under the registry lock.
    fn on_channel<T>(
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
        store.prune(&Retention::new(2, 0)).await.unwrap();
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
            ..Retention::new(0, 0)
        };
        assert_eq!(store.prune(&everything_old).await.unwrap(), 3);
        let mut items = hub.subscribe("s", None).await.unwrap();
        assert_eq!(items.next().await, Some(Delivery::Heartbeat));
        let next = hub.publish(draft("new".into())).await.unwrap();
        assert_eq!(items.next().await, Some(Delivery::Notification(next)));
    }
}

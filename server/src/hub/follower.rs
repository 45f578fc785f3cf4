//! A stream's follower, for a store that several instances append to
//! ([`SharedStore`](crate::store::SharedStore)): one task per stream with subscribers
//! here, reading from the store what is appended and sending it to the stream's channel,
//! in the store's order.

use std::sync::Arc;
use std::time::Duration;

use common::backoff::delays_between;

use super::channels::Channels;
use super::feed::Feed;
use crate::store::{EventId, Store};

/// Most entries a follower reads at once.
const FOLLOW_BATCH: usize = 512;
/// How long a follower's read waits for new entries before it checks that its stream
/// still has subscribers.
const FOLLOW_WAIT: Duration = Duration::from_secs(2);
/// A follower's first and longest wait before it reads again after a failed read.
const FOLLOW_RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

/// The follower of `stream` (see the hub's module documentation): reads what
/// is appended to `stream` after `cursor` and sends it to `feed`, until the stream has no
/// subscribers here. A failed read is retried from the same position after a backoff
/// with jitter, so an outage of the store loses and doubles nothing. Entries that
/// retention dropped before the follower read them (a long outage, a burst larger than a
/// stream's cap) are a [`Live::Gap`](super::feed::Live::Gap): every subscriber then catches up from the store,
/// which tells those that lost entries with a reset.
pub async fn run(
    store: Arc<dyn Store>,
    channels: Arc<Channels>,
    stream: String,
    feed: Arc<Feed>,
    mut cursor: EventId,
) {
    let Some(shared) = store.shared() else {
        return;
    };
    let retries = || delays_between(FOLLOW_RETRY.0, FOLLOW_RETRY.1, None);
    let mut delays = retries();
    let mut failing = false;
    while channels.still_followed(&stream, &feed) {
        match shared
            .wait_after(&stream, cursor, FOLLOW_BATCH, FOLLOW_WAIT)
            .await
        {
            Ok(read) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("following {stream} again from {cursor}");
                    delays = retries();
                }
                if let Some(newest) = read.reset_to {
                    tracing::warn!(
                        "entries of {stream} after {cursor} were dropped by retention before \
                         they could be read; its subscribers catch up from the store"
                    );
                    cursor = newest;
                    feed.gap(newest);
                }
                for entry in read.entries {
                    cursor = entry.id;
                    feed.send(entry);
                }
            }
            Err(err) => {
                let delay = delays.next().unwrap_or(FOLLOW_RETRY.1);
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!("following {stream} after {cursor} failed, retrying: {err:#}");
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

//! The hub's follower of a store that several instances append to
//! ([`SharedStore`](crate::store::SharedStore)): one task per instance, reading the store's
//! change feed (every entry appended to any stream, in the store's order) and sending each
//! entry to its stream's feed, when this instance has one. A stream nobody here follows
//! costs the follower one skipped change; the Redis connections it holds are one, however
//! many streams are followed.

use std::sync::{Arc, Weak};
use std::time::Duration;

use common::backoff::delays_between;

use super::channels::Channels;
use super::directory::Directory;
use crate::store::{Change, ChangeCursor, Changes, Store};

/// Most changes a follower reads at once.
const FOLLOW_BATCH: usize = 512;
/// How long a read waits for new changes before the follower checks that the hub lives.
const FOLLOW_WAIT: Duration = Duration::from_secs(2);
/// A follower's first and longest wait before it reads again after a failed read.
const FOLLOW_RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

/// Follows `store`'s change feed from its head, for `channels` and `directory`, until they
/// are gone. Feeds made before the head was read are told of a gap: what was appended
/// before it never reaches them, so their subscribers read it from the store; and the
/// directory reads the store's names then, after the head, so that no stream made before
/// it is missed (the follower learns the later ones). A failed read is retried from the same position after a backoff with jitter,
/// so an outage of the store loses and doubles nothing. Changes the feed dropped before
/// they were read (an outage longer than it keeps them) are a gap in every feed: their
/// subscribers catch up from the store, which tells those that lost entries with a reset;
/// the directory lists the store's names again for streams made meanwhile. An entry that
/// retention dropped before it was read is a gap in its stream's feed alone.
pub async fn run(store: Arc<dyn Store>, channels: Weak<Channels>, directory: Weak<Directory>) {
    let Some(shared) = store.shared() else {
        return;
    };
    let retries = || delays_between(FOLLOW_RETRY.0, FOLLOW_RETRY.1, None);
    let mut delays = retries();
    let mut failing = false;
    let mut cursor: Option<ChangeCursor> = None;
    while channels.strong_count() > 0 {
        let read = match cursor {
            Some(after) => shared.changes_after(after, FOLLOW_BATCH, FOLLOW_WAIT).await,
            None => shared.changes_head().await.map(|head| Changes {
                cursor: head,
                lost: true,
                ..Changes::default()
            }),
        };
        let read = match read {
            Ok(read) => read,
            Err(err) => {
                let delay = delays.next().unwrap_or(FOLLOW_RETRY.1);
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!("following the store's changes failed, retrying: {err:#}");
                }
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        if std::mem::take(&mut failing) {
            tracing::info!("following the store's changes again");
            delays = retries();
        }
        let (Some(channels), Some(directory)) = (channels.upgrade(), directory.upgrade()) else {
            return;
        };
        if read.lost {
            // At start (no cursor yet) the same holds for what came before the head.
            if cursor.is_some() {
                tracing::warn!(
                    "changes were dropped from the store's change feed before they could be \
                     read; every subscriber catches up from the store"
                );
            }
            channels.gap_all();
            directory.relist();
        }
        for change in read.changes {
            match change {
                Change::Appended(entry) => {
                    directory.learn(&entry.notification.stream);
                    channels.send(&entry);
                }
                Change::Dropped { stream, id } => {
                    tracing::warn!(
                        "entry {id} of {stream} was dropped by retention before it could be \
                         read; its subscribers catch up from the store"
                    );
                    channels.gap(&stream, id);
                }
            }
        }
        cursor = Some(read.cursor);
    }
}

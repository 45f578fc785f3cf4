//! The names of the streams this instance knows of, for subscriptions with patterns:
//! `alerts.*` follows the streams that match when it connects and those that appear
//! later. The store's list is read once at start (with a store shared by instances, once
//! the follower knows where it starts); then the writer adds each stream it appends to
//! and, with a shared store, the follower each stream it reads a change of (so no
//! instance lists every name again and again: with 50,000 streams that was a `SMEMBERS`
//! of all of them every second on every instance). After the follower lost changes, the
//! list is read again.
//!
//! A name is never dropped: a stream that retention emptied still counts, so a pattern
//! subscriber that connects while it is empty follows its next entry too.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;

use crate::store::Store;

/// How long a failed read of the store's list waits before it is tried again.
const RETRY_LIST: Duration = Duration::from_secs(1);

/// The known stream names, as a watch channel: pattern subscribers wake when one is added.
pub struct Directory {
    names: watch::Sender<Arc<BTreeSet<String>>>,
    store: Arc<dyn Store>,
}

impl Directory {
    /// A directory that `store`'s list fills, in the background. A shared store's is
    /// listed by the hub's follower once it knows where it starts reading changes (see
    /// `follower::run`): listed here as well, every name was read twice at start.
    pub fn new(store: Arc<dyn Store>) -> Arc<Self> {
        let shared = store.shared().is_some();
        let directory = Arc::new(Self {
            names: watch::channel(Arc::default()).0,
            store,
        });
        if !shared {
            directory.relist();
        }
        directory
    }

    /// Reads the store's list again, in the background.
    pub fn relist(self: &Arc<Self>) {
        tokio::spawn(list(self.store.clone(), Arc::downgrade(self)));
    }

    /// Adds `stream`, waking the watchers when it is new.
    pub fn learn(&self, stream: &str) {
        if !self.names.borrow().contains(stream) {
            self.names.send_modify(|names| {
                Arc::make_mut(names).insert(stream.to_owned());
            });
        }
    }

    /// The names, and what is added later.
    pub fn watch(&self) -> watch::Receiver<Arc<BTreeSet<String>>> {
        self.names.subscribe()
    }
}

/// Learns the names `store` lists (a failed read is tried again after [`RETRY_LIST`]),
/// unless the directory is gone.
async fn list(store: Arc<dyn Store>, directory: Weak<Directory>) {
    loop {
        match store.stream_names().await {
            Ok(names) => {
                let Some(directory) = directory.upgrade() else {
                    return;
                };
                for name in names {
                    directory.learn(&name);
                }
                return;
            }
            Err(err) => {
                tracing::debug!("listing the streams failed, again in {RETRY_LIST:?}: {err:#}")
            }
        }
        tokio::time::sleep(RETRY_LIST).await;
        if directory.strong_count() == 0 {
            return;
        }
    }
}

//! The names of the streams this instance knows of, for subscriptions with patterns:
//! `alerts.*` follows the streams that match when it connects and those that appear
//! later. The writer adds each stream it appends to; with a store shared by instances,
//! the store's list is read again every [`RELIST`], for streams created elsewhere.
//!
//! A name is never dropped: a stream that retention emptied still counts, so a pattern
//! subscriber that connects while it is empty follows its next entry too.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;

use crate::store::Store;

/// How often the list of a shared store is read again: the longest a stream created by
/// another instance waits for this one's pattern subscribers (none of its entries is
/// lost meanwhile: they start from their position, see `Position`).
pub const RELIST: Duration = Duration::from_secs(1);

/// The known stream names, as a watch channel: pattern subscribers wake when one is added.
pub struct Directory {
    names: watch::Sender<Arc<BTreeSet<String>>>,
}

impl Directory {
    /// An empty directory that `store`'s list fills (once, or every [`RELIST`] when the
    /// store is shared) for as long as the directory lives.
    pub fn new(store: Arc<dyn Store>) -> Arc<Self> {
        let directory = Arc::new(Self {
            names: watch::channel(Arc::default()).0,
        });
        tokio::spawn(list(store, Arc::downgrade(&directory)));
        directory
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

/// Learns the names `store` lists; again every [`RELIST`] for a shared store (a failed
/// read is tried again then), until the directory is gone.
async fn list(store: Arc<dyn Store>, directory: Weak<Directory>) {
    let shared = store.shared().is_some();
    loop {
        match store.stream_names().await {
            Ok(names) => {
                let Some(directory) = directory.upgrade() else {
                    return;
                };
                for name in names {
                    directory.learn(&name);
                }
                if !shared {
                    return;
                }
            }
            Err(err) => tracing::debug!("listing the streams failed, again in {RELIST:?}: {err:#}"),
        }
        tokio::time::sleep(RELIST).await;
        if directory.strong_count() == 0 {
            return;
        }
    }
}

//! The hub's one writer task: group commit (see [`write_batches`]).

use std::sync::Arc;
use std::time::Instant;

use anyhow::anyhow;
use tokio::sync::{mpsc, oneshot};

use super::activity::Activity;
use super::channels::Channels;
use super::directory::Directory;
use crate::metrics;
use crate::store::{Draft, Entry, Error, Store};

/// Most publishes stored in one transaction.
const MAX_BATCH: usize = 512;
/// Publishes that may wait for the writer before publishers wait to queue.
pub const QUEUE: usize = 4096;

/// A queued publish and where its outcome goes.
pub struct Publish {
    pub draft: Draft,
    pub received: Instant,
    pub done: oneshot::Sender<Result<Arc<Entry>, Error>>,
}

/// What the writer task works with.
pub struct Writer {
    pub store: Arc<dyn Store>,
    pub channels: Arc<Channels>,
    pub directory: Arc<Directory>,
    pub activity: Arc<Activity>,
}

/// The writer: takes every publish waiting (up to [`MAX_BATCH`]), stores them in one
/// transaction, sends the entries live in id order (unless the store is followed), and
/// answers each publisher. A failed append stores nothing (the transaction rolls back),
/// is reported to its publishers and by the store's health, and the next batch simply
/// tries again. Ends when the hub is gone.
pub async fn write_batches(writer: Writer, mut queue: mpsc::Receiver<Publish>) {
    let local = writer.store.shared().is_none();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (drafts, waiting): (Vec<Draft>, Vec<_>) = batch
            .drain(..)
            .map(|p| (p.draft, (p.received, p.done)))
            .unzip();
        let started = Instant::now();
        match writer.store.append(drafts).await {
            Ok(entries) => {
                metrics::stored(entries.len(), started.elapsed());
                for (entry, (received, done)) in entries.into_iter().zip(waiting) {
                    entry.fan_out.published(received);
                    if local {
                        writer.channels.send(&entry);
                    }
                    writer.directory.learn(&entry.notification.stream);
                    writer.activity.record(&entry.notification.stream);
                    // A publisher that hung up still had its entry stored and sent.
                    let _ = done.send(Ok(entry));
                }
            }
            Err(err) => {
                let reason = format!("{err:#}");
                for (_, done) in waiting {
                    let _ = done.send(Err(anyhow!("the store failed: {reason}")));
                }
            }
        }
    }
}

//! A subscriber of every stream a [`Selection`] covers, on one connection: the streams it
//! names, those its patterns match now, and those that appear later.
//!
//! Each stream is followed by its own [`Subscription`] (replay → live, exactly once, as for
//! a subscriber of that stream alone), started at the stream's cursor in the subscriber's
//! [`Position`]; their deliveries are merged as they come. Every notification and reset
//! carries the whole position as its id, so one `Last-Event-ID` resumes every stream. A
//! reset names its stream and moves only that stream's cursor. Heartbeats come once for
//! the connection, not once per stream.
//!
//! A subscriber of one named stream alone needs none of this: [`alone`] turns its one
//! [`Subscription`] into events, with the entries' own ids.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Weak};

use common::selector::MAX_STREAMS;
use common::Selection;
use futures::stream::{BoxStream, SelectAll};
use futures::StreamExt;
use tokio::sync::{watch, Semaphore};

use super::position::Position;
use super::subscription::{Delivery, Subscription};
use super::Hub;
use crate::store::{Entry, Error};

/// Whether a subscriber may read a stream that a pattern matched (auth's rule, kept by the
/// subscription for the streams that appear later).
pub type MayRead = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// What a [`Selected`] subscriber receives, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A notification. `id` is the subscriber's position after it; `None` when the
    /// subscriber follows this one stream alone (see [`alone`]), whose position is the
    /// entry's own id.
    Notification {
        entry: Arc<Entry>,
        id: Option<String>,
    },
    /// `stream` lost entries to retention (or the position was unknown): reload its history.
    /// `id` is the position that goes on from there.
    Reset { stream: String, id: String },
    /// The first event of every subscription: a heartbeat that carries the position it
    /// starts from, so that a client that gets nothing else still resumes from there.
    Greeting { id: String },
    /// The periodic liveness signal.
    Heartbeat,
}

/// A subscriber of a selection; see the module documentation.
pub struct Selected {
    hub: Weak<Hub>,
    selection: Selection,
    may_read: MayRead,
    position: Position,
    /// Each stream's deliveries, tagged with its name. `SelectAll` polls only the streams
    /// that woke it; a map polled in turn polled all ten streams of a subscriber for each
    /// delivery (workload G, server CPU per delivery against one stream: 1.10-1.14× with
    /// `tokio_stream::StreamMap`, 0.97-1.14× with this).
    streams: SelectAll<BoxStream<'static, (Arc<str>, Delivery)>>,
    /// The names of the streams followed.
    followed: HashSet<String>,
    /// The known stream names, while a pattern may match more of them.
    names: Option<watch::Receiver<Arc<BTreeSet<String>>>>,
    heartbeat: watch::Receiver<()>,
    greeted: bool,
    /// One page of replay from the store at a time, for all the streams: what the
    /// connection holds in memory does not grow with the streams it covers.
    replay: Arc<Semaphore>,
}

impl Selected {
    /// Follows `streams` (what the selection covers now) from `position`.
    pub(super) async fn new(
        hub: &Arc<Hub>,
        selection: Selection,
        streams: Vec<String>,
        position: Position,
        may_read: MayRead,
    ) -> Result<Self, Error> {
        let names = selection.has_patterns().then(|| hub.directory.watch());
        let mut selected = Self {
            hub: Arc::downgrade(hub),
            selection,
            may_read,
            position,
            streams: SelectAll::new(),
            followed: HashSet::new(),
            names,
            heartbeat: hub.heartbeat.subscribe(),
            greeted: false,
            replay: Arc::new(Semaphore::new(1)),
        };
        for stream in streams {
            selected.follow(hub, stream).await?;
        }
        // Streams learned since `streams` was listed (a subscription's first look at the
        // names is now, so none learned in between is passed over).
        anyhow::ensure!(
            selected.follow_new().await,
            "the subscription could not follow every stream it covers"
        );
        Ok(selected)
    }

    /// Starts following `stream` from its cursor.
    async fn follow(&mut self, hub: &Hub, stream: String) -> Result<(), Error> {
        let cursor = self.position.cursor(&stream);
        let subscription = (hub.subscribe_with(
            &stream,
            Some(cursor),
            hub.quiet.subscribe(),
            self.replay.clone(),
        ))
        .await?;
        let name: Arc<str> = stream.as_str().into();
        self.streams.push(
            (subscription.into_stream())
                .map(move |delivery| (name.clone(), delivery))
                .boxed(),
        );
        self.followed.insert(stream);
        Ok(())
    }

    /// Follows the streams that appeared since the last look and that the selection covers.
    /// `false` when the subscription must end: the hub is gone, a store read failed, or
    /// the selection now covers more than [`MAX_STREAMS`] (the client's next connection
    /// is told so).
    async fn follow_new(&mut self) -> bool {
        let Some(names) = self
            .names
            .as_mut()
            .map(|names| names.borrow_and_update().clone())
        else {
            return true;
        };
        let Some(hub) = self.hub.upgrade() else {
            return false;
        };
        for name in names.iter() {
            if self.followed.contains(name)
                || !self.selection.matches(name)
                || !(self.may_read)(name)
            {
                continue;
            }
            if self.followed.len() >= MAX_STREAMS {
                tracing::warn!(
                    "a subscription now covers more than {MAX_STREAMS} streams; ending it"
                );
                return false;
            }
            if let Err(err) = self.follow(&hub, name.clone()).await {
                tracing::debug!("following {name} failed, ending the subscription: {err:#}");
                return false;
            }
        }
        true
    }

    /// The next event; `None` when the subscription ends (the hub is gone).
    pub async fn next(&mut self) -> Option<Event> {
        if !self.greeted {
            self.greeted = true;
            return Some(Event::Greeting {
                id: self.position.to_string(),
            });
        }
        loop {
            // Deliveries before heartbeats, as in `Subscription::follow_live`.
            tokio::select! {
                biased;
                Some((stream, delivery)) = self.streams.next(), if !self.streams.is_empty() => {
                    match delivery {
                        // Each stream's greeting; the connection's heartbeats come below.
                        Delivery::Heartbeat => {}
                        Delivery::Notification(entry) => {
                            self.position.advance(&stream, entry.id);
                            let id = Some(self.position.to_string());
                            return Some(Event::Notification { entry, id });
                        }
                        Delivery::Reset(restart) => {
                            self.position.advance(&stream, restart);
                            return Some(Event::Reset { id: self.position.to_string(), stream: stream.to_string() });
                        }
                    }
                }
                changed = self.heartbeat.changed() => {
                    return changed.ok().map(|()| Event::Heartbeat);
                }
                changed = names_changed(&mut self.names) => {
                    if changed.is_err() {
                        self.names = None;
                    } else if !self.follow_new().await {
                        return None;
                    }
                }
            }
        }
    }

    /// The events as a stream that ends when [`Selected::next`] does.
    pub fn into_stream(self) -> impl futures::Stream<Item = Event> + Send + 'static {
        futures::stream::unfold(self, |mut selected| async move {
            let event = selected.next().await?;
            Some((event, selected))
        })
    }
}

/// A subscriber of one named stream alone, as events: its subscription's deliveries, the
/// first one (a heartbeat) as the greeting, and the entries' own ids as its ids.
pub fn alone(subscription: Subscription) -> impl futures::Stream<Item = Event> + Send + 'static {
    let start = subscription.cursor().to_string();
    let stream = subscription.stream().to_owned();
    subscription
        .into_stream()
        .enumerate()
        .map(move |(n, delivery)| match delivery {
            Delivery::Heartbeat if n == 0 => Event::Greeting { id: start.clone() },
            Delivery::Heartbeat => Event::Heartbeat,
            Delivery::Notification(entry) => Event::Notification { entry, id: None },
            Delivery::Reset(restart) => Event::Reset {
                stream: stream.clone(),
                id: restart.to_string(),
            },
        })
}

/// When the known names change; never without them.
async fn names_changed(
    names: &mut Option<watch::Receiver<Arc<BTreeSet<String>>>>,
) -> Result<(), watch::error::RecvError> {
    match names {
        Some(names) => names.changed().await,
        None => std::future::pending().await,
    }
}

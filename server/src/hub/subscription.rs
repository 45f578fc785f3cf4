//! One subscriber's way from stored history to live events, with no gap and no duplicate.
//!
//! A [`Subscription`] joins the stream's live channel *before* it reads the store, so an
//! entry published in between is in one or both, never in neither; it then hands out
//! entries in id order and skips any at or below the last id it delivered. Its states:
//!
//! ```text
//!   Greeting ──▶ Replaying ──(a short page: caught up)──▶ Live
//!                    ▲                                     │
//!                    └──────(live channel overflowed)──────┘
//! ```
//!
//! - **Greeting**: the first delivery is a heartbeat, so a client knows at once that the
//!   stream is open and how often to expect a sign of life.
//! - **Replaying**: pages of entries after the cursor: from the stream's recent entries in
//!   memory when they cover the cursor (see the hub's `Feed`), else from the store. A page
//!   read from the store is read and held under a permit of the connection's replay
//!   semaphore (one page at a time per connection, however many streams it covers), until
//!   it has been handed out, that is, as the socket drains: a connection holds at most
//!   [`REPLAY_PAGE`] stored entries of replay in memory. Twenty slow readers of 16 streams
//!   of 8 KB entries held a page of each stream each, 1.26 GB. If
//!   the store no longer has every entry after the cursor (retention) or never issued it,
//!   a [`Delivery::Reset`] tells the client and moves the cursor to where the store says
//!   to go on from.
//! - **Live**: entries from the channel; a subscriber too slow for its bounded buffer is
//!   not cut off but goes back to replaying (from memory while it can).
//! - **Pausing** (not drawn): a read of the store failed (Redis away, say). The subscriber
//!   keeps its connection and heartbeats, and reads again from the same position after
//!   [`RETRY_READ`].

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::feed::{Feed, Live};
use crate::metrics;
use crate::store::{Entry, EventId, Store};

/// Entries read from the store per query while replaying; the most a connection holds.
pub const REPLAY_PAGE: usize = 500;

/// Entries a catching-up subscriber sends before it lets other tasks run.
const YIELD_EVERY: u32 = 16;

/// How long a subscriber waits to read the store again after a failed read.
const RETRY_READ: Duration = Duration::from_secs(1);

/// What a subscriber receives, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A notification, replayed or live.
    Notification(Arc<Entry>),
    /// Entries after the subscriber's position were dropped by retention, or the position
    /// is unknown: it should reload history. Carries the id to resume after from now on.
    Reset(EventId),
    /// The periodic liveness signal; also the first delivery of every subscription.
    Heartbeat,
}

/// Where a subscription is; see the module documentation.
enum Phase {
    Greeting,
    /// Handing out `page`; when it is empty, read the next one if `more` may follow.
    Replaying {
        page: VecDeque<Arc<Entry>>,
        more: bool,
        /// The connection's permit to hold a page read from the store.
        held: Option<OwnedSemaphorePermit>,
    },
    Live,
    /// Reading the store failed: read again at `until`, with heartbeats meanwhile.
    Pausing {
        until: Instant,
    },
}

impl Phase {
    /// Replaying from the cursor, with nothing read yet.
    fn catching_up() -> Self {
        Self::Replaying {
            page: VecDeque::new(),
            more: true,
            held: None,
        }
    }
}

/// What one step of [`Subscription::next`] came to: a delivery (`Break(Some)`), the end
/// (`Break(None)`: the hub is gone), or another step (`Continue`).
type Step = ControlFlow<Option<Delivery>>;

/// One subscriber of one stream. Read it with [`Subscription::next`] or as a stream.
pub struct Subscription {
    store: Arc<dyn Store>,
    stream: String,
    /// The id of the last entry delivered (or skipped over by a reset).
    cursor: EventId,
    phase: Phase,
    /// The stream's feed (its recent entries) and a receiver of its channel.
    feed: Arc<Feed>,
    live: broadcast::Receiver<Live>,
    heartbeat: watch::Receiver<()>,
    /// The connection's permits to hold a page read from the store (see the module
    /// documentation).
    replay: Arc<Semaphore>,
    /// Entries replayed since the last yield (see [`YIELD_EVERY`]).
    replayed_since_yield: u32,
}

impl Subscription {
    /// A subscription to `stream` that has seen everything up to `cursor`; `live` must
    /// already be subscribed to the channel of `feed`.
    pub(super) fn new(
        store: Arc<dyn Store>,
        stream: String,
        cursor: EventId,
        (feed, live): (Arc<Feed>, broadcast::Receiver<Live>),
        heartbeat: watch::Receiver<()>,
        replay: Arc<Semaphore>,
    ) -> Self {
        Self {
            store,
            stream,
            cursor,
            phase: Phase::Greeting,
            feed,
            live,
            heartbeat,
            replay,
            replayed_since_yield: 0,
        }
    }

    /// The stream followed.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The id of the last entry delivered: where a client resumes from.
    pub fn cursor(&self) -> EventId {
        self.cursor
    }

    /// The next delivery; `None` when the hub is gone.
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            let step = match &self.phase {
                Phase::Greeting => {
                    self.phase = Phase::catching_up();
                    Step::Break(Some(Delivery::Heartbeat))
                }
                Phase::Replaying { .. } => self.replay().await,
                &Phase::Pausing { until } => self.pause(until).await,
                Phase::Live => self.follow_live().await,
            };
            if let Step::Break(delivery) = step {
                return delivery;
            }
        }
    }

    /// One step of catching up: the next entry of the page in hand; else the next page,
    /// from the feed's recent entries or else the store; else the switch to live.
    async fn replay(&mut self) -> Step {
        let Phase::Replaying { page, more, held } = &mut self.phase else {
            return Step::Continue(());
        };
        if let Some(entry) = page.pop_front() {
            self.cursor = entry.id;
            metrics::replayed();
            // A page from memory is ready at once: without a yield now and then, a
            // thousand subscribers catching up would hold the workers until done, and
            // every other request (`/healthz`) would wait behind them.
            self.replayed_since_yield += 1;
            if self.replayed_since_yield >= YIELD_EVERY {
                self.replayed_since_yield = 0;
                tokio::task::yield_now().await;
            }
            return Step::Break(Some(Delivery::Notification(entry)));
        }
        // The page in hand is out: its permit goes to the connection's next reader.
        *held = None;
        if !*more {
            self.phase = Phase::Live;
            return Step::Continue(());
        }
        if let Some(recent) = self.feed.recent_after(self.cursor, REPLAY_PAGE) {
            *more = recent.len() == REPLAY_PAGE;
            *page = recent.into();
            return Step::Continue(());
        }
        let Ok(permit) = self.replay.clone().acquire_owned().await else {
            return Step::Break(None);
        };
        let read = self
            .store
            .after(&self.stream, self.cursor, REPLAY_PAGE)
            .await;
        let Phase::Replaying { page, more, held } = &mut self.phase else {
            return Step::Continue(());
        };
        match read {
            Ok(read) => {
                if let Some(restart) = read.reset_to {
                    self.cursor = restart;
                    metrics::reset();
                    return Step::Break(Some(Delivery::Reset(restart)));
                }
                *more = read.entries.len() == REPLAY_PAGE;
                *page = read.entries.into();
                *held = Some(permit);
            }
            Err(err) => {
                tracing::debug!(
                    "replay of {} failed, again in {RETRY_READ:?}: {err:#}",
                    self.stream
                );
                self.phase = Phase::Pausing {
                    until: Instant::now() + RETRY_READ,
                };
            }
        }
        Step::Continue(())
    }

    /// After a failed read of the store: heartbeats until `until`, then catching up again.
    async fn pause(&mut self, until: Instant) -> Step {
        tokio::select! {
            () = tokio::time::sleep_until(until) => {
                self.phase = Phase::catching_up();
                Step::Continue(())
            }
            changed = self.heartbeat.changed() => Step::Break(changed.ok().map(|()| Delivery::Heartbeat)),
        }
    }

    /// Live: the channel's next entry that is newer than the cursor, or a heartbeat. A
    /// gap in the channel, or falling behind its buffer, goes back to catching up.
    ///
    /// The channel is polled first (`biased`): while entries are ready the heartbeat is not
    /// polled at all, so a subscriber does not register on the shared heartbeat (a lock
    /// that every subscriber takes) only to cancel it at once, as a random order did for
    /// half the events. In the profile of fan-out workload B, `Notified` polls were 2 % of
    /// the server's samples. A heartbeat matters on a quiet stream, where the channel is
    /// pending and the heartbeat is polled.
    async fn follow_live(&mut self) -> Step {
        tokio::select! {
            biased;
            received = self.live.recv() => match received {
                Ok(Live::Entry(entry)) if entry.id > self.cursor => {
                    self.cursor = entry.id;
                    Step::Break(Some(Delivery::Notification(entry)))
                }
                Ok(Live::Entry(_)) => Step::Continue(()),
                Ok(Live::Gap) => {
                    self.phase = Phase::catching_up();
                    Step::Continue(())
                }
                Err(RecvError::Lagged(missed)) => {
                    metrics::lagged();
                    tracing::debug!(
                        "a subscriber of {} fell {missed} behind; catching up from the store",
                        self.stream
                    );
                    self.phase = Phase::catching_up();
                    Step::Continue(())
                }
                Err(RecvError::Closed) => Step::Break(None),
            },
            changed = self.heartbeat.changed() => Step::Break(changed.ok().map(|()| Delivery::Heartbeat)),
        }
    }

    /// The deliveries as a stream that ends when [`Subscription::next`] does.
    pub fn into_stream(self) -> impl Stream<Item = Delivery> + Send + 'static {
        futures::stream::unfold(self, |mut subscription| async move {
            let delivery = subscription.next().await?;
            Some((delivery, subscription))
        })
    }
}

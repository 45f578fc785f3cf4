//! The shared server clock behind `/sse/time`: one ticker task per interval, however many
//! subscribers it has.
//!
//! Each tick is formatted once and handed to every subscriber through a `broadcast`
//! channel, so 10,000 clients at the same interval cost one timer and one timestamp per
//! tick, and a subscriber that is a few ticks late still gets every tick (only one more
//! than [`BACKLOG`] ticks behind skips ahead). A ticker stops when its last subscriber is
//! gone and starts again with the next one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use futures::{stream, Stream, StreamExt};
use tokio::runtime::Handle;
use tokio::sync::broadcast;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::BroadcastStream;

/// A formatted instant (RFC 3339, UTC, nanoseconds), shared by all subscribers of a tick.
pub type Tick = Arc<str>;

/// The current time as a [`Tick`].
pub fn now() -> Tick {
    crate::timestamp::now().into()
}

/// Ticks a subscriber may fall behind before it skips to the newest.
pub const BACKLOG: usize = 16;

type Registry = Arc<Mutex<HashMap<Duration, broadcast::Sender<Tick>>>>;

/// The registry of running tickers, keyed by interval. Cheap to clone.
#[derive(Clone, Default)]
pub struct Tickers {
    tickers: Registry,
}

impl Tickers {
    /// A receiver that sees a new [`Tick`] every `every`, starting a ticker if none runs yet.
    pub fn subscribe(&self, every: Duration) -> broadcast::Receiver<Tick> {
        let mut tickers = self.tickers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = tickers.get(&every) {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(BACKLOG);
        tickers.insert(every, tx.clone());
        clock().spawn(run_ticker(self.tickers.clone(), every, tx));
        rx
    }

    /// The time now, then every tick of the ticker for `every`: what a clock stream sends.
    /// A subscriber more than [`BACKLOG`] ticks behind skips ahead: a late tick is not
    /// worth sending.
    pub fn ticks(&self, every: Duration) -> impl Stream<Item = Tick> + Send + 'static {
        let ticks = self.subscribe(every);
        stream::once(async { now() })
            .chain(BroadcastStream::new(ticks).filter_map(|tick| async move { tick.ok() }))
    }
}

/// Where the tickers run: a thread with a runtime of its own, so that a tick leaves on
/// time however busy the workers are; subscribers that are late take it from the channel
/// (up to [`BACKLOG`] behind). On the workers, a ticker woke behind the writes of
/// thousands of subscribers: in workload I of the benchmark (16,667 subscribers on each
/// of six instances, the clock every second) one instance's ticker was once more than a
/// second late and every one of its subscribers missed a tick.
fn clock() -> &'static Handle {
    static CLOCK: OnceLock<Handle> = OnceLock::new();
    CLOCK.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime for the clock");
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("clock".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .expect("a thread for the clock");
        handle
    })
}

/// Sends a tick every `every` until nobody listens, then removes itself from the registry.
async fn run_ticker(tickers: Registry, every: Duration, tx: broadcast::Sender<Tick>) {
    let mut interval = tokio::time::interval_at(Instant::now() + every, every);
    interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        if tx.receiver_count() == 0 {
            // Subscribing happens under this lock, so nobody can join between check and removal.
            let mut map = tickers.lock().unwrap_or_else(PoisonError::into_inner);
            if tx.receiver_count() == 0 {
                map.remove(&every);
                return;
            }
        }
        // No receiver left is handled on the next tick.
        let _ = tx.send(now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many ticker tasks are running: one per interval in use.
    fn running(tickers: &Tickers) -> usize {
        tickers.tickers.lock().unwrap().len()
    }

    #[tokio::test]
    async fn one_ticker_per_interval_and_it_stops_when_unused() {
        let tickers = Tickers::default();
        let every = Duration::from_millis(10);
        let mut a = tickers.subscribe(every);
        let mut b = tickers.subscribe(every);
        let _other = tickers.subscribe(Duration::from_millis(20));
        assert_eq!(running(&tickers), 2);

        let (tick_a, tick_b) = (a.recv().await.unwrap(), b.recv().await.unwrap());
        assert!(Arc::ptr_eq(&tick_a, &tick_b), "formatted once, shared");
        let second = a.recv().await.unwrap();
        assert!(
            second > tick_a,
            "every tick, in order: {tick_a} then {second}"
        );

        drop((a, b, _other));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(running(&tickers), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn ticks_leave_on_time_while_the_workers_are_busy() {
        let tickers = Tickers::default();
        let mut ticks = tickers.subscribe(Duration::from_millis(100));
        // The test's only worker is held for a second, as a burst of writes would hold it.
        std::thread::sleep(Duration::from_secs(1));
        let mut sent = Vec::new();
        while let Ok(tick) = ticks.try_recv() {
            sent.push(tick);
        }
        assert!(
            sent.len() >= 3,
            "ticks sent while the workers were busy: {sent:?}"
        );
        assert!(sent.windows(2).all(|w| w[0] < w[1]), "{sent:?}");
    }
}

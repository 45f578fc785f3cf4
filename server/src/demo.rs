//! The seed's counter: a growing number published ten times a second to `counter`.
//!
//! It goes through the normal publish path (stored, replayable), with a retention of its
//! own ([`KEEP`] entries) so it cannot fill the database.

use std::sync::Arc;
use std::time::Duration;

use common::Level;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::store::{Draft, Retention};

/// The stream the counter publishes to.
pub const STREAM: &str = "counter";

/// How many counter entries are kept (a minute's worth).
pub const KEEP: u64 = 600;

/// How often the counter publishes.
pub const EVERY: Duration = Duration::from_millis(100);

/// `retention` with the counter's own, smaller cap.
pub fn with_counter_cap(mut retention: Retention) -> Retention {
    retention.per_stream.push((STREAM.to_owned(), KEEP));
    retention
}

/// Publishes 1, 2, 3, … until `shutdown`, going on from the stored count after a restart.
pub async fn run(hub: Arc<Hub>, shutdown: CancellationToken) {
    let last = match hub.latest(STREAM, 1).await {
        Ok(mut latest) => latest
            .pop()
            .and_then(|entry| entry.notification.title.parse::<u64>().ok())
            .unwrap_or(0),
        Err(err) => {
            tracing::warn!("demo counter: cannot read where it was: {err:#}");
            0
        }
    };
    let mut interval = tokio::time::interval(EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in last + 1.. {
        tokio::select! {
            _ = interval.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let draft = Draft {
            stream: STREAM.to_owned(),
            title: n.to_string(),
            body: String::new(),
            level: Level::Info,
        };
        if let Err(err) = hub.publish(draft).await {
            tracing::warn!("demo counter: {err:#}");
        }
    }
}

//! The seed's counter: a growing number published ten times a second to `counter`.
//!
//! It goes through the normal publish path (stored, replayable), with a retention of its
//! own ([`crate::config::DEMO_KEEP`] entries) so it cannot fill the database.

use std::sync::Arc;
use std::time::Duration;

use common::Level;
use tokio_util::sync::CancellationToken;

use crate::config::DEMO_STREAM;
use crate::hub::Hub;
use crate::store::Draft;

/// How often the counter publishes.
pub const EVERY: Duration = Duration::from_millis(100);

/// Publishes 1, 2, 3, … until `shutdown`, going on from the stored count after a restart.
pub async fn run(hub: Arc<Hub>, shutdown: CancellationToken) {
    let last = match hub.store().latest(DEMO_STREAM, 1).await {
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
            stream: DEMO_STREAM.to_owned(),
            title: n.to_string(),
            body: String::new(),
            level: Level::Info,
        };
        if let Err(err) = hub.publish(draft).await {
            tracing::warn!("demo counter: {err:#}");
        }
    }
}

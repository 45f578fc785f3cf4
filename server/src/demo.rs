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

/// Publishes 1, 2, 3, … until `shutdown`.
pub async fn run(hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 1u64.. {
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

//! The seed's counter: a growing number published ten times a second to `counter`.
//!
//! It goes through the normal publish path (stored, replayable), with a retention of its
//! own ([`KEEP`] entries) so it cannot fill the database.

use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// How long an instance holds the counter once it has it; it renews every [`RENEW`].
const LEASE: Duration = Duration::from_secs(3);
const RENEW: Duration = Duration::from_secs(1);

/// Publishes 1, 2, 3, … until `shutdown`, going on from the stored count after a restart.
/// Among instances sharing a store, one counts at a time (a lease); when it stops, another
/// takes over within [`LEASE`] and goes on from the stored count.
pub async fn run(hub: Arc<Hub>, shutdown: CancellationToken) {
    let holder = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    let mut interval = tokio::time::interval(EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut leading, mut renewed, mut last) = (false, None::<Instant>, 0);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = shutdown.cancelled() => return,
        }
        if renewed.is_none_or(|at| at.elapsed() >= RENEW) {
            // The lease runs from when it was asked for, not from the answer.
            let asked = Instant::now();
            let mut now_leading = match hub.lead(STREAM, &holder, LEASE).await {
                Ok(held) => held,
                Err(err) => {
                    tracing::warn!("demo counter: {err:#}");
                    false
                }
            };
            if now_leading && !leading {
                match stored_count(&hub).await {
                    Some(count) => last = count,
                    // Not knowing where the count is, counting from 1 would repeat it.
                    None => now_leading = false,
                }
            }
            (leading, renewed) = (now_leading, Some(asked));
        }
        // A lease not renewed in time may be someone else's by now.
        if !leading || renewed.is_some_and(|at| at.elapsed() >= LEASE - RENEW) {
            continue;
        }
        let draft = Draft {
            stream: STREAM.to_owned(),
            title: (last + 1).to_string(),
            body: String::new(),
            level: Level::Info,
        };
        match hub.publish(draft).await {
            Ok(_) => last += 1,
            Err(err) => tracing::warn!("demo counter: {err:#}"),
        }
    }
}

/// The newest count stored (0 when there is none), or `None` when it cannot be read.
async fn stored_count(hub: &Hub) -> Option<u64> {
    match hub.latest(STREAM, 1).await {
        Ok(mut latest) => Some(
            latest
                .pop()
                .and_then(|entry| entry.notification.title.parse::<u64>().ok())
                .unwrap_or(0),
        ),
        Err(err) => {
            tracing::warn!("demo counter: cannot read where it was: {err:#}");
            None
        }
    }
}

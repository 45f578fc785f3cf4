//! How every client of the hub waits between attempts: exponential backoff with jitter,
//! so that many clients cut off together do not all come back in the same instant.
//!
//! One policy for the CLI's `listen`, the browser's `EventSource` wrapper and the web
//! app's history retries; the delays come from `backon`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// An endless iterator of delays, from [`reconnect_delays`].
pub type ReconnectDelays = ExponentialBackoff;

/// The first delay; each failure in a row doubles it, up to [`MAX_DELAY`].
pub const MIN_DELAY: Duration = Duration::from_millis(500);

/// The longest delay between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// The delays before each retry, endless: `MIN_DELAY`, then doubling up to `MAX_DELAY`, each
/// with a random extra of up to itself. `seed` seeds the jitter; `None` lets `backon` pick
/// one, which works natively but not in a browser (no OS randomness there): pass one.
pub fn reconnect_delays(seed: Option<u64>) -> ReconnectDelays {
    delays_between(MIN_DELAY, MAX_DELAY, seed)
}

/// The same policy between other bounds: `min`, doubling up to `max`, each with a random
/// extra of up to itself. The server retries its store with shorter ones than a client
/// waits for a server.
pub fn delays_between(min: Duration, max: Duration, seed: Option<u64>) -> ReconnectDelays {
    let builder = ExponentialBuilder::new()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times();
    match seed {
        Some(seed) => builder.with_jitter_seed(seed),
        None => builder,
    }
    .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_up_to_the_ceiling() {
        let delays: Vec<Duration> = reconnect_delays(Some(7)).take(12).collect();
        assert!(
            delays[0] >= MIN_DELAY && delays[0] <= MIN_DELAY * 2,
            "{delays:?}"
        );
        assert!(
            delays[1] >= MIN_DELAY * 2 && delays[1] <= MIN_DELAY * 4,
            "{delays:?}"
        );
        assert!(delays.iter().all(|d| *d <= MAX_DELAY * 2), "{delays:?}");
        assert!(delays[11] >= MAX_DELAY, "{delays:?}");
        let other: Vec<Duration> = reconnect_delays(Some(8)).take(12).collect();
        assert_ne!(delays, other, "different seeds, different jitter");
    }
}

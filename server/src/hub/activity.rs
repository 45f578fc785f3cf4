//! Publishes per second of each stream over the last minute, for the streams overview.
//!
//! A ring of one counter per second per stream that published in the last minute; the
//! writer task records each stored entry. Seconds are counted from a monotonic clock, so
//! a wall-clock jump cannot scramble the figures.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// Seconds of history kept per stream.
pub const WINDOW_SECS: usize = 60;

/// The per-second publish counters of every recently active stream.
pub struct Activity {
    started: Instant,
    by_stream: Mutex<HashMap<String, Rates>>,
}

/// One stream's counters: `counts[s % WINDOW_SECS]` holds second `s`.
struct Rates {
    newest_second: u64,
    counts: [u32; WINDOW_SECS],
}

impl Rates {
    /// Moves the window forward to `now`, zeroing the seconds it skipped.
    fn advance(&mut self, now: u64) {
        let skipped = now
            .saturating_sub(self.newest_second)
            .min(WINDOW_SECS as u64);
        for second in (now + 1 - skipped)..=now {
            self.counts[second as usize % WINDOW_SECS] = 0;
        }
        self.newest_second = self.newest_second.max(now);
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            by_stream: Mutex::default(),
        }
    }
}

impl Activity {
    /// The current second; starts at [`WINDOW_SECS`] so that a window never reaches
    /// below zero.
    fn now(&self) -> u64 {
        self.started.elapsed().as_secs() + WINDOW_SECS as u64
    }

    /// Counts one publish to `stream`, now.
    pub fn record(&self, stream: &str) {
        let now = self.now();
        let mut by_stream = self
            .by_stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let rates = by_stream.entry(stream.to_owned()).or_insert_with(|| Rates {
            newest_second: now,
            counts: [0; WINDOW_SECS],
        });
        rates.advance(now);
        rates.counts[now as usize % WINDOW_SECS] += 1;
    }

    /// Every stream that published in the last minute, with its publishes in each of the
    /// last [`WINDOW_SECS`] seconds, oldest first. Forgets streams idle for longer.
    pub fn per_second(&self) -> HashMap<String, Vec<u32>> {
        let now = self.now();
        let mut by_stream = self
            .by_stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        by_stream.retain(|_, rates| now - rates.newest_second < WINDOW_SECS as u64);
        by_stream
            .iter_mut()
            .map(|(stream, rates)| {
                rates.advance(now);
                let oldest = now + 1 - WINDOW_SECS as u64;
                let seconds = (oldest..=now).map(|s| rates.counts[s as usize % WINDOW_SECS]);
                (stream.clone(), seconds.collect())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_that_skips_seconds_zeroes_them_and_keeps_the_rest() {
        let mut rates = Rates {
            newest_second: 100,
            counts: [0; WINDOW_SECS],
        };
        rates.counts[100 % WINDOW_SECS] = 7;
        rates.counts[99 % WINDOW_SECS] = 3;
        rates.advance(102);
        assert_eq!(rates.counts[100 % WINDOW_SECS], 7);
        assert_eq!(rates.counts[99 % WINDOW_SECS], 3);
        assert_eq!(rates.counts[101 % WINDOW_SECS], 0);
        rates.counts[102 % WINDOW_SECS] = 5;
        rates.advance(100 + WINDOW_SECS as u64);
        assert_eq!(
            rates.counts[100 % WINDOW_SECS],
            0,
            "second 100 left the window"
        );
        assert_eq!(rates.counts[102 % WINDOW_SECS], 5);
        rates.advance(1_000);
        assert!(rates.counts.iter().all(|&c| c == 0));
    }

    #[test]
    fn records_land_in_the_newest_second() {
        let activity = Activity::default();
        activity.record("a");
        activity.record("a");
        activity.record("b");
        let figures = activity.per_second();
        assert_eq!(figures["a"].len(), WINDOW_SECS);
        assert_eq!(figures["a"].iter().sum::<u32>(), 2);
        assert_eq!(figures["b"].iter().sum::<u32>(), 1);
    }
}

//! Where a subscriber of several streams is in each of them, in one opaque id: the SSE
//! `id:` of every event it gets, so that one `Last-Event-ID` resumes every stream.
//!
//! A position is a *base* and the streams that moved past it. The base is a position
//! that holds in every stream (the store's [`clock`](crate::store::Store::clock) when the
//! subscriber first connected, or an entry id it resumed from: ids of both stores order
//! across streams, SQLite's because they are one sequence, Redis's because they are its
//! clock), so a stream that appeared after the base, or that the subscriber adds later,
//! starts there: nothing published since is lost. On the wire it is the base, then
//! `,stream:id` for each stream with a position of its own, in name order:
//! `41,alerts.disk:57,messages:58`. Neither stream names nor ids can hold `,` or `:`.
//! A subscriber that follows one named stream gets plain entry ids, as before.

use std::collections::BTreeMap;
use std::fmt;

use crate::store::EventId;

/// A subscriber's position in every stream; see the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Position {
    base: EventId,
    streams: BTreeMap<String, EventId>,
}

impl Position {
    /// The same position `base` in every stream.
    pub fn at(base: EventId) -> Self {
        Self {
            base,
            streams: BTreeMap::new(),
        }
    }

    /// The position a client sent (`Last-Event-ID`): an entry id or a position of this
    /// server. Anything else is [`EventId::UNKNOWN`] everywhere, which every stream
    /// answers with a reset, as retention would.
    pub fn parse_or_unknown(text: &str) -> Self {
        Self::parse(text).unwrap_or_else(|| Self::at(EventId::UNKNOWN))
    }

    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split(',');
        let base = parts.next()?.parse().ok()?;
        let streams = parts
            .map(|part| {
                let (stream, id) = part.split_once(':')?;
                common::is_valid_stream_name(stream).then_some(())?;
                Some((stream.to_owned(), id.parse().ok()?))
            })
            .collect::<Option<_>>()?;
        Some(Self { base, streams })
    }

    /// Where `stream` is: its own position, else the base.
    pub fn cursor(&self, stream: &str) -> EventId {
        self.streams.get(stream).copied().unwrap_or(self.base)
    }

    /// `stream` is now at `id` (an entry delivered, or where a reset moved it).
    pub fn advance(&mut self, stream: &str, id: EventId) {
        if id == self.base {
            self.streams.remove(stream);
        } else if let Some(at) = self.streams.get_mut(stream) {
            *at = id;
        } else {
            self.streams.insert(stream.to_owned(), id);
        }
    }

    /// The position of a subscriber of `stream` alone: its cursor as the base, so that the
    /// id is the plain entry id.
    pub fn only(&self, stream: &str) -> Self {
        Self::at(self.cursor(stream))
    }

    /// This position as the start of a subscriber of several streams, the store's clock
    /// being `clock`. A base that is an entry id becomes a position in every stream
    /// (`everywhere`, see `Store::everywhere`). A base past the clock (an unknown id, a
    /// database restored from an older backup) is no position at all: the streams covered
    /// now that lack a cursor of their own start from [`EventId::UNKNOWN`] (a reset each),
    /// and the base becomes the clock, where streams found later start.
    pub fn for_several(
        mut self,
        everywhere: impl Fn(EventId) -> EventId,
        clock: EventId,
        covered: &[String],
    ) -> Self {
        let base = everywhere(self.base);
        if base > clock {
            for stream in covered {
                self.streams
                    .entry(stream.clone())
                    .or_insert(EventId::UNKNOWN);
            }
            self.base = clock;
        } else {
            self.base = base;
        }
        let base = self.base;
        self.streams.retain(|_, at| *at != base);
        self
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.base)?;
        for (stream, id) in &self.streams {
            write!(f, ",{stream}:{id}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_fall_back_to_the_base() {
        let mut position = Position::at(EventId::new(41, 0));
        position.advance("messages", EventId::new(58, 0));
        position.advance("alerts.disk", EventId::new(57, 0));
        let text = position.to_string();
        assert_eq!(text, "41,alerts.disk:57,messages:58");
        let back = Position::parse_or_unknown(&text);
        assert_eq!(back, position);
        assert_eq!(back.cursor("messages"), EventId::new(58, 0));
        assert_eq!(back.cursor("new"), EventId::new(41, 0));
        assert_eq!(back.only("messages").to_string(), "58");
        assert_eq!(
            Position::parse_or_unknown("17").cursor("any"),
            EventId::new(17, 0)
        );
        let redis = Position::parse_or_unknown("1700000000000-3,a:1700000000001-0");
        assert_eq!(redis.cursor("a"), EventId::new(1_700_000_000_001, 0));
        for bad in ["", "x", "1,", "1,a", "1,a:", "1,a b:2", "1,a:2:3", "1;a:2"] {
            assert_eq!(
                Position::parse_or_unknown(bad),
                Position::at(EventId::UNKNOWN),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_base_past_the_clock_resets_the_streams_it_covers_and_starts_new_ones_at_the_clock() {
        let clock = EventId::new(100, 0);
        let same = |id| id;
        let covered = ["a".to_owned(), "b".to_owned()];
        let mut kept = Position::at(EventId::new(90, 0));
        kept.advance("a", EventId::new(95, 0));
        assert_eq!(kept.clone().for_several(same, clock, &covered), kept);

        let unknown = Position::parse_or_unknown("garbage").for_several(same, clock, &covered);
        assert_eq!(unknown.cursor("a"), EventId::UNKNOWN);
        assert_eq!(unknown.cursor("b"), EventId::UNKNOWN);
        assert_eq!(unknown.cursor("found.later"), clock);

        let mut restored = Position::at(EventId::new(500, 0));
        restored.advance("a", EventId::new(400, 0));
        let restored = restored.for_several(same, clock, &covered);
        assert_eq!(
            restored.cursor("a"),
            EventId::new(400, 0),
            "its own cursor stands"
        );
        assert_eq!(restored.cursor("b"), EventId::UNKNOWN);
        assert_eq!(restored.cursor("c"), clock);

        let redis = |id: EventId| EventId::new(id.major - 1, u64::MAX);
        let widened = Position::at(EventId::new(90, 3)).for_several(redis, clock, &covered);
        assert_eq!(widened.cursor("b"), EventId::new(89, u64::MAX));
    }
}

//! Which streams a subscription follows and a token's claims cover, in one rule: a
//! selector is a stream name (`messages`), or a prefix ending in `*` (`alerts.*`, `*`).
//! The server matches subscriptions and claims with it, the CLI and the web app check
//! what they send with it.

use std::fmt;
use std::str::FromStr;

use crate::validate::{is_valid_stream_name, Invalid, STREAM_NAME_RULE};

/// Most selectors one subscription may name: enough for a bell over a user's, a team's
/// and the system's streams, few enough that a URL stays short and matching stays cheap.
pub const MAX_SELECTORS: usize = 16;

/// Most streams one connection follows, selectors and what their patterns match together:
/// its resume id names the position of every stream it has delivered from.
pub const MAX_STREAMS: usize = 64;

/// One stream, or every stream whose name starts with a prefix.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Selector {
    /// Exactly this stream.
    Stream(String),
    /// Every stream whose name starts with this (possibly empty) prefix.
    Prefix(String),
}

impl Selector {
    /// Whether this selector covers `stream`.
    pub fn matches(&self, stream: &str) -> bool {
        match self {
            Self::Stream(name) => name == stream,
            Self::Prefix(prefix) => stream.starts_with(prefix.as_str()),
        }
    }

    /// Whether some stream is covered by both this selector and `other`.
    pub fn overlaps(&self, other: &Selector) -> bool {
        match (self, other) {
            (Self::Stream(name), other) | (other, Self::Stream(name)) => other.matches(name),
            (Self::Prefix(a), Self::Prefix(b)) => {
                a.starts_with(b.as_str()) || b.starts_with(a.as_str())
            }
        }
    }
}

/// Whether `pattern` (a selector's text, as in a token's claims) covers `stream`; a
/// malformed pattern covers nothing.
pub fn matches(pattern: &str, stream: &str) -> bool {
    pattern
        .parse::<Selector>()
        .is_ok_and(|selector| selector.matches(stream))
}

impl FromStr for Selector {
    type Err = Invalid;

    fn from_str(text: &str) -> Result<Self, Invalid> {
        match text.strip_suffix('*') {
            Some(prefix) if prefix.is_empty() || is_valid_stream_name(prefix) => {
                Ok(Self::Prefix(prefix.to_owned()))
            }
            None if is_valid_stream_name(text) => Ok(Self::Stream(text.to_owned())),
            _ => Err(Invalid(format!(
                "`{text}` is not a stream selector: a stream name or a prefix ending in * \
                 (alerts.*, *); {STREAM_NAME_RULE}"
            ))),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stream(name) => f.write_str(name),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// The selectors of one subscription: at least one, at most [`MAX_SELECTORS`], each once,
/// in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection(Vec<Selector>);

impl Selection {
    /// The selection of `texts` (each a selector), checked.
    pub fn parse<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Self, Invalid> {
        let mut selectors: Vec<Selector> = Vec::new();
        for text in texts {
            let selector = text.parse()?;
            if !selectors.contains(&selector) {
                selectors.push(selector);
            }
            if selectors.len() > MAX_SELECTORS {
                return Err(Invalid(format!(
                    "a subscription names at most {MAX_SELECTORS} streams or patterns"
                )));
            }
        }
        if selectors.is_empty() {
            return Err(Invalid("name at least one stream".into()));
        }
        Ok(Self(selectors))
    }

    /// The selectors, in the order given.
    pub fn selectors(&self) -> &[Selector] {
        &self.0
    }

    /// Whether any selector covers `stream`.
    pub fn matches(&self, stream: &str) -> bool {
        self.0.iter().any(|selector| selector.matches(stream))
    }

    /// The one stream this selection names, when it is exactly one stream and no pattern:
    /// such a subscription is today's single-stream one, ids included.
    pub fn single(&self) -> Option<&str> {
        match self.0.as_slice() {
            [Selector::Stream(name)] => Some(name),
            _ => None,
        }
    }

    /// Whether a selector is a pattern, so that streams appearing later may join.
    pub fn has_patterns(&self) -> bool {
        self.0.iter().any(|s| matches!(s, Selector::Prefix(_)))
    }

    /// The streams named outright (not by a pattern).
    pub fn streams(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|selector| match selector {
            Selector::Stream(name) => Some(name.as_str()),
            Selector::Prefix(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_overlap_when_a_stream_could_match_both() {
        let s = |text: &str| text.parse::<Selector>().unwrap();
        assert!(s("alerts.disk").overlaps(&s("alerts.*")));
        assert!(s("alerts.*").overlaps(&s("alerts.disk")));
        assert!(s("alerts.*").overlaps(&s("alerts.d*")));
        assert!(s("*").overlaps(&s("alerts.*")));
        assert!(s("alerts").overlaps(&s("alerts")));
        assert!(!s("news.*").overlaps(&s("alerts.*")));
        assert!(!s("alerts").overlaps(&s("alerts.*")));
        assert!(!s("news").overlaps(&s("alerts")));
    }

    #[test]
    fn selectors_are_names_or_prefixes() {
        assert_eq!("a.b".parse(), Ok(Selector::Stream("a.b".into())));
        assert_eq!("alerts.*".parse(), Ok(Selector::Prefix("alerts.".into())));
        assert_eq!("*".parse(), Ok(Selector::Prefix(String::new())));
        for bad in ["", "a b", "**", "a*b", "*a", "alerts.**"] {
            assert!(bad.parse::<Selector>().is_err(), "{bad:?}");
        }
        assert!(matches("alerts.*", "alerts.disk"));
        assert!(!matches("alerts.*", "alerts"));
        assert!(matches("*", "anything"));
        assert!(!matches("bad name*", "bad name"));
        assert_eq!(Selector::Prefix("a.".into()).to_string(), "a.*");
    }

    #[test]
    fn selections_are_checked_and_deduplicated() {
        let selection = Selection::parse(["a", "b.*", "a"]).unwrap();
        assert_eq!(selection.selectors().len(), 2);
        assert!(selection.matches("b.x") && selection.matches("a") && !selection.matches("c"));
        assert_eq!(selection.single(), None);
        assert_eq!(Selection::parse(["a"]).unwrap().single(), Some("a"));
        assert!(Selection::parse([]).is_err());
        let many: Vec<String> = (0..=MAX_SELECTORS).map(|n| format!("s{n}")).collect();
        let err = Selection::parse(many.iter().map(String::as_str)).unwrap_err();
        assert!(err.0.contains("at most 16"), "{err}");
    }
}

//! The one way the server writes instants: RFC 3339, UTC, with nanoseconds
//! (`2026-11-23T11:05:12.846472164Z`), as the seed's clock did. Fixed width, so that
//! stored timestamps also sort as text.

use chrono::{DateTime, SecondsFormat, Utc};

/// `instant` in the server's format.
pub fn format(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// The current time in the server's format.
pub fn now() -> String {
    format(Utc::now())
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_utc_with_nanoseconds() {
        let now = super::now();
        assert_eq!(now.len(), "2026-01-01T00:00:00.123456789Z".len(), "{now}");
        assert!(chrono::DateTime::parse_from_rfc3339(&now).is_ok());
        assert!(now.ends_with('Z'));
    }
}

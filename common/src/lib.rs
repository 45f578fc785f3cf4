//! Wire types shared by the server and the browser app.
//!
//! Everything that crosses the network — paths, SSE event names, JSON payloads, the rules
//! for what may be published ([`validate`]) and how clients wait between reconnects
//! ([`backoff`]) — is defined once here, so the two sides cannot drift apart.

pub mod backoff;
pub mod selector;
pub mod validate;

use serde::{Deserialize, Serialize};

pub use selector::{Selection, Selector};
pub use validate::{is_valid_stream_name, Draft, Invalid};

/// HTTP paths served by the server and called by the app.
pub mod paths {
    /// The server clock stream (`event: time`).
    pub const SSE_TIME: &str = "/sse/time";
    /// Named notification streams: `/events?stream=NAME`.
    pub const EVENTS: &str = "/events";
    /// The seed demo's trigger: publishes "Triggered at <server time>" to `?stream=`
    /// (default `messages`).
    pub const TRIGGER: &str = "/trigger";
    /// Publish (POST) and history (GET) of notifications.
    pub const NOTIFICATIONS: &str = "/api/notifications";
    /// Liveness probe.
    pub const HEALTHZ: &str = "/healthz";
    /// Prometheus metrics (text format).
    pub const METRICS: &str = "/metrics";
    /// A browser's token as a cookie: `POST` sets it, `DELETE` clears it.
    pub const SESSION: &str = "/api/session";
    /// Every stream with its figures ([`super::StreamsOverview`]).
    pub const STREAMS: &str = "/api/streams";
    /// The same overview as an SSE stream (`event: streams`), every `?interval_ms=`.
    pub const SSE_STREAMS: &str = "/sse/streams";
    /// The HTTP API's OpenAPI 3.1 description.
    pub const OPENAPI: &str = "/api/openapi.json";
}

/// Query parameters the server reads, named once for the server, the web app and the CLI.
pub mod query {
    /// The stream to publish to or read the history of (default `messages`); on
    /// `/events`, repeated, the streams and patterns to follow ([`crate::Selection`]).
    pub const STREAM: &str = "stream";
    /// On the streams overview: only streams whose names start with this.
    pub const PREFIX: &str = "prefix";
    /// On the streams overview: the order ([`crate::OverviewOrder`]).
    pub const SORT: &str = "sort";
    /// On the streams overview: at most this many streams
    /// ([`crate::OverviewOrder::LIMITS`]).
    pub const LIMIT: &str = "limit";
    /// The id to resume after: `EventSource` cannot set the `Last-Event-ID` header on a
    /// new connection, so the web app sends it here.
    pub const LAST_EVENT_ID: &str = "lastEventId";
    /// The server clock's interval on a notification stream, in ms.
    pub const CLOCK_MS: &str = "clock_ms";
    /// A token, for clients that cannot send a header (the least safe form).
    pub const ACCESS_TOKEN: &str = "access_token";
}

/// The header a reconnecting client names the last id it received in: SSE's own
/// `Last-Event-ID`, in lower case (header names are case-insensitive, and HTTP/2 sends
/// them in lower case).
pub const LAST_EVENT_ID_HEADER: &str = "last-event-id";

/// Names of the SSE events the server sends.
///
/// Notifications use the default `message` event (no `event:` line) so that plain
/// `EventSource.onmessage` pages work; control events are named so those pages ignore them.
pub mod events {
    /// One tick of the server clock; data is an RFC 3339 timestamp with nanoseconds.
    pub const TIME: &str = "time";
    /// Periodic liveness signal on notification streams; data is a [`super::Heartbeat`].
    pub const HEARTBEAT: &str = "heartbeat";
    /// Events after the requested `Last-Event-ID` are no longer stored (retention), or the
    /// id is unknown to the server: reload the history. Its `id:` is where to resume from.
    pub const RESET: &str = "reset";
    /// The streams overview; data is a [`super::StreamsOverview`].
    pub const STREAMS: &str = "streams";
    /// The token the stream's private streams were read with has expired: the stream is
    /// cut right after this event. Renew the token (a new session) before reconnecting,
    /// or the reconnection is refused with `401`. Data is a [`super::TokenExpired`].
    pub const TOKEN_EXPIRED: &str = "token-expired";
}

/// The data of a `token-expired` event.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenExpired {
    /// What to do, in words.
    pub reason: String,
    /// The token's `exp`: seconds since the Unix epoch.
    pub exp: u64,
}

/// The stream a notification goes to when none is named.
pub const DEFAULT_STREAM: &str = "messages";

/// How urgent a notification is; drives its colour in the UI.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Level {
    #[default]
    Info,
    Success,
    Warning,
    Error,
}

impl Level {
    /// The lowercase name used on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Success => "success",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

impl std::str::FromStr for Level {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "info" => Ok(Level::Info),
            "success" => Ok(Level::Success),
            "warning" => Ok(Level::Warning),
            "error" => Ok(Level::Error),
            other => Err(format!(
                "unknown level `{other}`: expected info, success, warning or error"
            )),
        }
    }
}

/// A stored notification, as sent in SSE `data` and returned by the API.
///
/// `id` is opaque to clients: compare it for equality, never do arithmetic on it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Notification {
    pub id: String,
    pub stream: String,
    pub title: String,
    pub body: String,
    pub level: Level,
    /// RFC 3339, UTC, nanoseconds.
    pub created_at: String,
}

/// The body of `POST /api/notifications`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewNotification {
    /// The stream (default `messages`): 1 to 64 of `A-Z a-z 0-9 _ . -`. The schemas of
    /// these fields state the rules of [`validate`] for the API's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_.-]{1,64}$"))]
    pub stream: Option<String>,
    /// One line, not blank, at most 200 characters, no control characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 200,
            pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
        )
    )]
    pub title: String,
    /// At most 4,000 characters; line breaks and tabs are its only control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 4000,
            pattern = "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*$"
        )
    )]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
}

/// A page of `GET /api/notifications`, oldest first.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct History {
    pub notifications: Vec<Notification>,
    /// Where a subscriber that has seen this page resumes (its `Last-Event-ID`): the id of
    /// the newest notification listed or, when none is, the `after` the page was asked
    /// for, or else the stream's position when the page was read, so that what is
    /// published meanwhile is replayed, not missed. Opaque, like every id; absent from
    /// servers older than this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_id: Option<String>,
}

/// Data of the `reset` event: the stream that lost what its subscriber missed, and why.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reset {
    pub reason: String,
    pub stream: String,
}

/// Data of the `heartbeat` event: the interval at which the server sends it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Heartbeat {
    pub interval_ms: u64,
}

impl Heartbeat {
    /// How long a client may hear nothing on a stream with these heartbeats before it calls
    /// the connection dead: two intervals, so that one late beat is not a false alarm.
    pub fn silence_limit(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.interval_ms.saturating_mul(2))
    }

    /// The silence limit to apply when a client asked for `asked` and the stream's
    /// heartbeats allow `self`: the tighter of the two, so a slow heartbeat never loosens
    /// what the client asked for.
    pub fn tighten(&self, asked: Option<std::time::Duration>) -> std::time::Duration {
        let allowed = self.silence_limit();
        asked.map_or(allowed, |asked| asked.min(allowed))
    }
}

/// The JSON body of every 4xx/5xx answer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: String,
}

/// One stream's figures in the streams overview.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamSummary {
    pub name: String,
    /// Notifications stored (what retention keeps).
    pub stored: u64,
    /// The newest stored notification's id and time (RFC 3339), if any.
    pub newest_id: Option<String>,
    pub newest_at: Option<String>,
    /// Subscribers connected to this server right now.
    pub subscribers: u64,
    /// Publishes in the last 60 seconds.
    pub publishes_last_minute: u64,
    /// Publishes in each of the last 60 seconds, oldest first.
    pub publishes_per_second: Vec<u32>,
}

/// The body of `GET /api/streams` and the data of `event: streams`: the first streams, in
/// the order asked, of those that have stored notifications, subscribers or recent
/// publishes (and whose names start with the prefix asked), and how many there are.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamsOverview {
    pub streams: Vec<StreamSummary>,
    /// How many streams there are (with the prefix asked), listed or not.
    #[serde(default)]
    pub total: u64,
}

/// How old an answer of the streams overview may be: the hub makes it once per this for
/// every caller (the pages watching it, `/metrics`), however many there are.
pub const OVERVIEW_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// The order of the streams overview (`?sort=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OverviewOrder {
    /// By name (the default).
    #[default]
    Name,
    /// Most publishes in the last minute first, then most subscribers, then most stored.
    Busiest,
    /// Newest notification first.
    Newest,
}

impl OverviewOrder {
    /// The accepted values of `?limit=`, and the default.
    pub const LIMITS: std::ops::RangeInclusive<u64> = 1..=1_000;
    pub const DEFAULT_LIMIT: u64 = 100;

    /// Its name in `?sort=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Busiest => "busiest",
            Self::Newest => "newest",
        }
    }
}

impl std::str::FromStr for OverviewOrder {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Name, Self::Busiest, Self::Newest]
            .into_iter()
            .find(|order| order.as_str() == s)
            .ok_or_else(|| format!("`sort` is one of name, busiest, newest, not `{s}`"))
    }
}

/// The body of `GET /healthz`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `ok`, or `degraded` while the store cannot write.
    pub status: String,
    /// `ok`, or why the store cannot write.
    pub store: String,
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip() {
        for level in [Level::Info, Level::Success, Level::Warning, Level::Error] {
            assert_eq!(level.as_str().parse::<Level>(), Ok(level));
        }
        assert!("fatal".parse::<Level>().is_err());
    }

    #[test]
    fn heartbeats_tighten_an_asked_silence_limit_but_never_loosen_it() {
        use std::time::Duration;
        let default_beat = Heartbeat {
            interval_ms: 15_000,
        };
        let fast_beat = Heartbeat { interval_ms: 1_000 };
        let asked = Some(Duration::from_secs(3));
        assert_eq!(default_beat.tighten(asked), Duration::from_secs(3));
        assert_eq!(fast_beat.tighten(asked), Duration::from_secs(2));
        assert_eq!(default_beat.tighten(None), Duration::from_secs(30));
    }
}

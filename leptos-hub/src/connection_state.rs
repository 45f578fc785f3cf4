//! What a connection is to the user: its state and, when it is down, why. The
//! `EventSource` wrapper ([`crate::event_source`]) sets it, the status pill shows it, and
//! the tabs of a group pass it on ([`crate::tab_group`]) in the two words of
//! [`ConnectionState::code`].

/// What the user sees of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// The first connection attempt is under way.
    Connecting,
    /// The stream is open and events flow.
    Live,
    /// The connection dropped; a new attempt is under way or scheduled.
    Reconnecting,
    /// Several attempts in a row failed, for this reason; attempts go on (the browser's at
    /// the server's `retry:` interval, ours with a growing delay).
    Offline(Trouble),
}

/// Why a connection is not live, as a plain request to its URL found out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trouble {
    /// No answer at all: the server is down or the network is.
    Unreachable,
    /// The server (or a proxy) said no: `401` or `403`.
    NotAllowed,
    /// Any other error status.
    ServerError(u16),
    /// Connected, but no event arrived in time (a hanging server or a buffering proxy).
    NoEvents,
}

impl Trouble {
    /// What an error status says: `401` and `403` (a token is missing, or does not cover
    /// the stream) are [`Trouble::NotAllowed`], any other is a server error.
    pub fn from_status(status: u16) -> Self {
        match status {
            401 | 403 => Trouble::NotAllowed,
            status => Trouble::ServerError(status),
        }
    }
}

impl ConnectionState {
    /// The one-word kind, for styling (and the first half of [`ConnectionState::code`]).
    pub fn kind(self) -> &'static str {
        self.code().0
    }

    /// The state as two words, kind and detail (`("offline", "503")`), how the tabs of a
    /// group tell each other; [`ConnectionState::from_code`] reads it back.
    pub fn code(self) -> (&'static str, String) {
        match self {
            ConnectionState::Connecting => ("connecting", String::new()),
            ConnectionState::Live => ("live", String::new()),
            ConnectionState::Reconnecting => ("reconnecting", String::new()),
            ConnectionState::Offline(Trouble::Unreachable) => ("offline", "unreachable".into()),
            ConnectionState::Offline(Trouble::NotAllowed) => ("offline", "not-allowed".into()),
            ConnectionState::Offline(Trouble::NoEvents) => ("offline", "no-events".into()),
            ConnectionState::Offline(Trouble::ServerError(status)) => {
                ("offline", status.to_string())
            }
        }
    }

    /// The state [`ConnectionState::code`] wrote; `None` for words it never writes.
    pub fn from_code(kind: &str, detail: &str) -> Option<Self> {
        Some(match (kind, detail) {
            ("connecting", _) => ConnectionState::Connecting,
            ("live", _) => ConnectionState::Live,
            ("reconnecting", _) => ConnectionState::Reconnecting,
            ("offline", "unreachable") => ConnectionState::Offline(Trouble::Unreachable),
            ("offline", "not-allowed") => ConnectionState::Offline(Trouble::NotAllowed),
            ("offline", "no-events") => ConnectionState::Offline(Trouble::NoEvents),
            ("offline", status) => {
                ConnectionState::Offline(Trouble::ServerError(status.parse().ok()?))
            }
            _ => return None,
        })
    }

    /// The words shown in the status pill.
    pub fn label(self) -> String {
        match self {
            ConnectionState::Offline(Trouble::Unreachable) => "offline: server unreachable".into(),
            ConnectionState::Offline(Trouble::NotAllowed) => "offline: not allowed".into(),
            ConnectionState::Offline(Trouble::ServerError(status)) => {
                format!("offline: server error ({status})")
            }
            ConnectionState::Offline(Trouble::NoEvents) => "offline: server not answering".into(),
            other => other.kind().into(),
        }
    }
}

//! The rules for what may be published, in one place: the server enforces them, the CLI
//! checks its flags with them, and the web app checks its form before sending.
//!
//! Titles are one line of text; bodies may have line breaks and tabs. No other control
//! characters are accepted (NUL included). Nothing a client sends can add SSE fields or
//! events: notifications travel as single-line JSON, in which every line break is escaped.

use std::fmt;

use crate::{Level, NewNotification, DEFAULT_STREAM};

/// Longest accepted notification title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// Longest accepted notification body, in characters.
pub const MAX_BODY_CHARS: usize = 4_000;

/// The rule for stream names, in words, for error messages.
pub const STREAM_NAME_RULE: &str = "stream names are 1 to 64 characters of A-Z a-z 0-9 _ . -";

/// Why some input was refused; its text is what the user is shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

/// A publish request that passed every rule: what the server stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    pub stream: String,
    pub title: String,
    pub body: String,
    pub level: Level,
}

impl Draft {
    /// The notification this draft became once stored as `id` at `created_at`.
    pub fn stored(self, id: String, created_at: String) -> crate::Notification {
        crate::Notification {
            id,
            stream: self.stream,
            title: self.title,
            body: self.body,
            level: self.level,
            created_at,
        }
    }
}

/// Whether `name` is a valid stream name: 1 to 64 of `A-Z a-z 0-9 _ . -`.
pub fn is_valid_stream_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `name` if it is a valid stream name, else the rule it breaks.
pub fn stream_name(name: &str) -> Result<&str, Invalid> {
    if is_valid_stream_name(name) {
        Ok(name)
    } else {
        Err(Invalid(format!("{STREAM_NAME_RULE}, got `{name}`")))
    }
}

impl TryFrom<NewNotification> for Draft {
    type Error = Invalid;

    /// Applies the defaults (stream `messages`, level `info`, empty body) and every rule.
    fn try_from(new: NewNotification) -> Result<Self, Invalid> {
        let stream = new.stream.unwrap_or_else(|| DEFAULT_STREAM.to_owned());
        stream_name(&stream)?;
        if new.title.trim().is_empty() {
            return Err(Invalid("title must not be empty".into()));
        }
        check_text("title", &new.title, MAX_TITLE_CHARS, |_| false)?;
        let body = new.body.unwrap_or_default();
        check_text("body", &body, MAX_BODY_CHARS, |c| {
            matches!(c, '\n' | '\r' | '\t')
        })?;
        Ok(Draft {
            stream,
            title: new.title,
            body,
            level: new.level.unwrap_or_default(),
        })
    }
}

/// At most `max_chars` characters, and no control characters but those `allowed_control`
/// lets through.
fn check_text(
    field: &str,
    text: &str,
    max_chars: usize,
    allowed_control: impl Fn(char) -> bool,
) -> Result<(), Invalid> {
    let chars = text.chars().count();
    if chars > max_chars {
        return Err(Invalid(format!(
            "{field} is {chars} characters long; at most {max_chars} are allowed"
        )));
    }
    if let Some(c) = text
        .chars()
        .find(|&c| c.is_control() && !allowed_control(c))
    {
        return Err(Invalid(format!(
            "{field} contains the control character U+{:04X}",
            c as u32
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(title: &str, body: Option<&str>) -> NewNotification {
        NewNotification {
            title: title.into(),
            body: body.map(Into::into),
            ..NewNotification::default()
        }
    }

    #[test]
    fn stream_names() {
        assert!(is_valid_stream_name("messages"));
        assert!(is_valid_stream_name("a.b-c_D9"));
        assert!(is_valid_stream_name(&"x".repeat(64)));
        assert!(!is_valid_stream_name(""));
        assert!(!is_valid_stream_name(&"x".repeat(65)));
        assert!(!is_valid_stream_name("with space"));
        assert!(!is_valid_stream_name("ünï"));
        assert!(!is_valid_stream_name("a/b"));
        assert_eq!(
            stream_name("a b").unwrap_err().0,
            format!("{STREAM_NAME_RULE}, got `a b`")
        );
    }

    #[test]
    fn drafts_get_defaults_and_obey_the_rules() {
        let draft = Draft::try_from(new("Hi", Some("two\nlines\tand a tab"))).unwrap();
        assert_eq!(
            (draft.stream.as_str(), draft.level),
            (DEFAULT_STREAM, Level::Info)
        );
        for (bad, reason) in [
            (new(" ", None), "title must not be empty"),
            (
                new("a\nb", None),
                "title contains the control character U+000A",
            ),
            (
                new("x", Some("nul\0")),
                "body contains the control character U+0000",
            ),
            (
                new(&"é".repeat(201), None),
                "title is 201 characters long; at most 200 are allowed",
            ),
        ] {
            assert_eq!(Draft::try_from(bad).unwrap_err().0, reason);
        }
        let elsewhere = NewNotification {
            stream: Some("no/slash".into()),
            ..new("x", None)
        };
        assert!(Draft::try_from(elsewhere).is_err());
    }
}

//! What the fuzz targets (`fuzz/`, run with `cargo fuzz`) check of the server's parsers
//! of client input, one function per target, so that the ordinary tests replay every
//! input of their corpus (and every crash found) through the very same checks without
//! building a fuzzer (`server/tests/fuzz_corpus.rs`).
//!
//! Each takes any bytes and panics only when a property fails: no input panics a parser,
//! and what a parser accepts means one thing whichever way it is read again.

use common::selector::{Selection, Selector};
use common::{Draft, NewNotification};

use crate::auth;
use crate::http1_stream::parse_stream_request;
use crate::hub::Position;
use crate::sse;

/// The head parser of the lean HTTP/1.1 stream path: a head it takes is a `GET` of a
/// stream route, no longer than what arrived, and its own head alone parses to the same.
pub fn stream_request_head(data: &[u8]) {
    let Some((request, head_len)) = parse_stream_request(data) else {
        return;
    };
    assert!(head_len <= data.len(), "the head is longer than the input");
    assert_eq!(request.method(), axum::http::Method::GET);
    assert!(crate::routes::STREAM_PATHS.contains(&request.uri().path()));
    let (again, again_len) =
        parse_stream_request(&data[..head_len]).expect("the head alone parses");
    assert_eq!(again_len, head_len);
    assert_eq!(again.uri(), request.uri());
    assert_eq!(again.headers(), request.headers());
}

/// The `Last-Event-ID` parser: any text is a position (an unknown one at worst), and a
/// position reads back as itself from the id it is sent as.
pub fn resume_position(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let position = Position::parse_or_unknown(text);
    assert_eq!(Position::parse_or_unknown(&position.to_string()), position);
}

/// The selector rule of `?stream=`, of the claims and of `--private-stream`: the same
/// texts pass every reader of it, and a selector reads back as itself.
pub fn selectors(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let texts: Vec<&str> = text.split('&').collect();
    if let Ok(selection) = Selection::parse(texts.iter().copied()) {
        for selector in selection.selectors() {
            assert_eq!(
                selector.to_string().parse::<Selector>().as_ref(),
                Ok(selector)
            );
        }
        for name in &texts {
            let _ = selection.matches(name);
        }
    }
    for text in texts {
        let parsed = text.parse::<Selector>();
        assert_eq!(
            auth::check_pattern(text).is_ok(),
            parsed.is_ok(),
            "{text:?}"
        );
        if let Ok(selector) = parsed {
            assert_eq!(
                common::selector::matches(text, text),
                selector.matches(text)
            );
        }
    }
}

/// The publishing rules: a body they accept is stored as a notification whose SSE frame
/// is one event with one id, every other line its data, which reads back as the same
/// notification (no input can add a field or an event).
pub fn publish_body(data: &[u8]) {
    let Ok(new) = serde_json::from_slice::<NewNotification>(data) else {
        return;
    };
    let Ok(draft) = Draft::try_from(new) else {
        return;
    };
    assert!(common::is_valid_stream_name(&draft.stream));
    let stored = draft.stored("7".to_owned(), "2026-12-06T00:00:00Z".to_owned());
    let json = serde_json::to_string(&stored).expect("a notification encodes");
    let frame = sse::frame(None, Some(&stored.id), &json);
    let frame = std::str::from_utf8(&frame).expect("frames are text");
    let body = frame.strip_suffix("\n\n").expect("one event, ended once");
    let mut lines = body.split('\n');
    assert_eq!(lines.next(), Some("id: 7"));
    let data: Vec<&str> = lines
        .map(|line| {
            line.strip_prefix("data: ")
                .expect("every other line is data")
        })
        .collect();
    let read: common::Notification =
        serde_json::from_str(&data.join("\n")).expect("the data reads back");
    assert_eq!(read, stored);
}

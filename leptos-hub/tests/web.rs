//! Browser tests in headless Chrome, against a real server that `scripts/test.sh` starts
//! (its URL comes in `HUB_TEST_SERVER` at build time).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use gloo_timers::future::sleep;
use leptos::prelude::*;
use leptos_hub::api::Api;
use leptos_hub::connection_state::{ConnectionState, Trouble};
use leptos_hub::event_source::{ConnectionOptions, SseMessage};
use leptos_hub::notification_feed::use_notification_feed;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const SERVER: &str = match option_env!("HUB_TEST_SERVER") {
    Some(url) => url,
    None => "http://127.0.0.1:18932",
};

/// Polls `condition` every 20 ms until it holds, failing after `limit`.
async fn wait_until(what: &str, limit: Duration, condition: impl Fn() -> bool) {
    let start = js_sys::Date::now();
    while !condition() {
        assert!(
            js_sys::Date::now() - start < limit.as_millis() as f64,
            "timed out waiting for: {what}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

#[wasm_bindgen_test]
async fn wrapper_receives_events_and_reports_live() {
    let owner = Owner::new();
    let received = Rc::new(RefCell::new(Vec::new()));
    let sink = received.clone();
    let api = Api::new(SERVER);
    let connection = owner.with(|| {
        ConnectionOptions::new(move |last| api.resume_url("/sse/time?interval_ms=20", last))
            .events(&[common::events::TIME])
            .connect(move |message| sink.borrow_mut().push(message))
    });
    assert_eq!(
        connection.state.get_untracked(),
        ConnectionState::Connecting
    );
    wait_until("three events", Duration::from_secs(10), || {
        received.borrow().len() >= 3
    })
    .await;
    assert_eq!(connection.state.get_untracked(), ConnectionState::Live);
    let first = received.borrow()[..3].to_vec();
    assert_eq!(
        first.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["1", "2", "3"]
    );
    assert!(first
        .iter()
        .all(|m| m.event == "time" && m.data.ends_with('Z')));
    assert_eq!(
        connection.last_event_id.get_untracked().as_deref(),
        Some(received.borrow().last().unwrap().id.as_str())
    );

    // Dropping the owner closes the connection: no more events arrive.
    drop(owner);
    let count = received.borrow().len();
    sleep(Duration::from_millis(200)).await;
    assert_eq!(received.borrow().len(), count);
}

#[wasm_bindgen_test]
async fn wrapper_reopens_when_the_browser_gives_up_and_loses_nothing() {
    // The first URL is a finite stream: after 3 events the server ends it, the browser
    // reconnects with Last-Event-ID: 3, gets 204 and gives up (readyState CLOSED). The
    // wrapper must open a new EventSource by itself, resuming after id 3.
    let owner = Owner::new();
    let urls = Rc::new(RefCell::new(Vec::<String>::new()));
    let received = Rc::new(RefCell::new(Vec::new()));
    let (seen, sink) = (urls.clone(), received.clone());
    let api = Api::new(SERVER);
    let connection = owner.with(|| {
        ConnectionOptions::new(move |last| {
            let path = if seen.borrow().is_empty() {
                "/sse/time?interval_ms=20&count=3"
            } else {
                "/sse/time?interval_ms=20"
            };
            let url = api.resume_url(path, last);
            seen.borrow_mut().push(url.clone());
            url
        })
        .events(&[common::events::TIME])
        .connect(move |message: SseMessage| sink.borrow_mut().push(message.id))
    });
    wait_until("events after the reopen", Duration::from_secs(15), || {
        received.borrow().len() >= 6
    })
    .await;
    let ids: Vec<u64> = received
        .borrow()
        .iter()
        .map(|id| id.parse().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=ids.len() as u64).collect();
    assert_eq!(ids, expected, "every id exactly once, in order");
    assert!(
        urls.borrow()[1].ends_with("lastEventId=3"),
        "{:?}",
        urls.borrow()
    );
    assert_eq!(connection.state.get_untracked(), ConnectionState::Live);
    drop(owner);
}

/// Publishes through the server's API, as another client would.
async fn publish(stream: &str, title: &str) -> common::Notification {
    let new = common::NewNotification {
        stream: Some(stream.into()),
        title: title.into(),
        ..Default::default()
    };
    Api::new(SERVER).publish(&new).await.unwrap()
}

/// A stream name no other test run has used.
fn unique_stream(prefix: &str) -> String {
    format!("{prefix}-{}", js_sys::Math::random().to_bits())
}

#[wasm_bindgen_test]
async fn wrapper_receives_notifications_and_resumes_after_the_server_ends_the_stream() {
    // The test server closes notification streams after a few seconds
    // (`--max-stream-secs`), so this subscription has to resume, losing nothing.
    let stream = unique_stream("wrapper");
    let owner = Owner::new();
    let received = Rc::new(RefCell::new(Vec::<String>::new()));
    let sink = received.clone();
    let api = Api::new(SERVER);
    let path = format!("/events?stream={stream}");
    let connection = owner.with(|| {
        ConnectionOptions::new(move |last| api.resume_url(&path, last))
            .events(&["message"])
            .connect_later(move |message| sink.borrow_mut().push(message.id))
    });
    assert_eq!(
        connection.state.get_untracked(),
        ConnectionState::Connecting,
        "nothing opens before start"
    );
    connection.start(Some("0".into()));
    wait_until("live", Duration::from_secs(10), || {
        connection.state.get_untracked() == ConnectionState::Live
    })
    .await;
    let mut published = Vec::new();
    let start = js_sys::Date::now();
    // Publish across at least one server-side close (every 2 s).
    while js_sys::Date::now() - start < 5000.0 {
        published.push(publish(&stream, "tick").await.id);
        sleep(Duration::from_millis(250)).await;
    }
    wait_until("every notification", Duration::from_secs(10), || {
        received.borrow().len() >= published.len()
    })
    .await;
    assert_eq!(*received.borrow(), published, "each exactly once, in order");
    drop(owner);
}

#[wasm_bindgen_test]
async fn a_silent_connection_is_dropped_and_resumed_by_the_watchdog() {
    // One tick a minute: after the first event the connection goes quiet, as a half-open
    // one would. With a 300 ms silence limit the wrapper must reopen it, resuming after
    // the last id, and get the next tick at once.
    let owner = Owner::new();
    let urls = Rc::new(RefCell::new(Vec::<String>::new()));
    let received = Rc::new(RefCell::new(Vec::new()));
    let (seen, sink) = (urls.clone(), received.clone());
    let api = Api::new(SERVER);
    owner.with(|| {
        ConnectionOptions::new(move |last| {
            let url = api.resume_url("/sse/time?interval_ms=60000", last);
            seen.borrow_mut().push(url.clone());
            url
        })
        .events(&[common::events::TIME])
        .silence_limit(Duration::from_millis(300))
        .connect(move |message: SseMessage| sink.borrow_mut().push(message.id))
    });
    wait_until("three reopened ticks", Duration::from_secs(10), || {
        received.borrow().len() >= 3
    })
    .await;
    assert_eq!(received.borrow()[..3], ["1", "2", "3"]);
    assert!(
        urls.borrow()[1].ends_with("lastEventId=1"),
        "{:?}",
        urls.borrow()
    );
    assert!(
        urls.borrow()[2].ends_with("lastEventId=2"),
        "{:?}",
        urls.borrow()
    );
    drop(owner);
}

#[wasm_bindgen_test]
async fn a_server_that_keeps_refusing_shows_as_offline() {
    // A 404 makes the browser give up at once; after three failed attempts in a row the
    // state says offline (attempts go on, further apart).
    let owner = Owner::new();
    let api = Api::new(SERVER);
    let connection = owner.with(|| {
        ConnectionOptions::new(move |_| api.url("/no-such-stream"))
            .events(&["message"])
            .connect(|_| {})
    });
    wait_until("offline: server error", Duration::from_secs(15), || {
        connection.state.get_untracked() == ConnectionState::Offline(Trouble::ServerError(404))
    })
    .await;
    drop(owner);
}

/// The URL of the stalling test server (`e2e`'s `stalling-server`), from `scripts/test.sh`.
const STALLING: &str = match option_env!("HUB_STALLING_SERVER") {
    Some(url) => url,
    None => "http://127.0.0.1:18933",
};

/// Opens `path` on the stalling server with a 300 ms connect timeout; returns the state
/// seen after each of the first attempts, and how many attempts were made.
async fn attempts_against(path: &'static str) -> (Vec<ConnectionState>, usize) {
    let owner = Owner::new();
    let attempts = Rc::new(RefCell::new(0));
    let counter = attempts.clone();
    let connection = owner.with(|| {
        ConnectionOptions::new(move |_| {
            *counter.borrow_mut() += 1;
            format!("{STALLING}{path}")
        })
        .events(&["message"])
        .connect_timeout(Duration::from_millis(300))
        .connect(|_| {})
    });
    let mut states = vec![connection.state.get_untracked()];
    wait_until("offline", Duration::from_secs(20), || {
        matches!(
            connection.state.get_untracked(),
            ConnectionState::Offline(_)
        )
    })
    .await;
    states.push(connection.state.get_untracked());
    let made = *attempts.borrow();
    drop(owner);
    (states, made)
}

#[wasm_bindgen_test]
async fn a_connect_that_never_answers_is_given_up_and_retried_with_backoff() {
    let (states, attempts) = attempts_against("/hang").await;
    assert_eq!(states[0], ConnectionState::Connecting);
    assert_eq!(states[1], ConnectionState::Offline(Trouble::NoEvents));
    // Three failed attempts in a row make it offline (the first two reconnecting).
    assert!(attempts >= 3, "{attempts} attempts");
}

#[wasm_bindgen_test]
async fn headers_without_a_body_never_show_as_live() {
    let owner = Owner::new();
    let connection = owner.with(|| {
        ConnectionOptions::new(move |_| format!("{STALLING}/held"))
            .events(&["message"])
            .connect_timeout(Duration::from_millis(300))
            .connect(|_| {})
    });
    let start = js_sys::Date::now();
    let mut states = Vec::new();
    while js_sys::Date::now() - start < 2_500.0 {
        states.push(connection.state.get_untracked());
        sleep(Duration::from_millis(20)).await;
    }
    drop(owner);
    assert!(!states.contains(&ConnectionState::Live), "{states:?}");
    assert!(
        states.contains(&ConnectionState::Reconnecting),
        "{states:?}"
    );
    let (_, attempts) = attempts_against("/held").await;
    assert!(attempts >= 3, "{attempts} attempts");
}

/// A connection to `stream` shared under `key`, as a tab of the app would open it,
/// collecting notification ids.
fn shared_tab(
    owner: &Owner,
    stream: &str,
    key: &str,
) -> (
    leptos_hub::event_source::Connection,
    Rc<RefCell<Vec<String>>>,
) {
    let received = Rc::new(RefCell::new(Vec::new()));
    let sink = received.clone();
    let api = Api::new(SERVER);
    let path = format!("/events?stream={stream}");
    let key = key.to_owned();
    let connection = owner.with(|| {
        ConnectionOptions::new(move |last| api.resume_url(&path, last))
            .events(&["message"])
            .shared(key)
            .connect_later(move |message| sink.borrow_mut().push(message.id))
    });
    (connection, received)
}

#[wasm_bindgen_test]
async fn tabs_share_one_connection_and_a_follower_takes_over_without_loss() {
    // Two "tabs" in one page: Web Locks and BroadcastChannel work the same between two
    // owners of one document as between two tabs.
    assert!(
        leptos_hub::tab_group::supported(),
        "the test page is a secure context"
    );
    let stream = unique_stream("tabs");
    let key = format!("test-{stream}");
    let (leader_owner, follower_owner) = (Owner::new(), Owner::new());
    let (leader, by_leader) = shared_tab(&leader_owner, &stream, &key);
    leader.start(Some("0".into()));
    wait_until("the leader is live", Duration::from_secs(10), || {
        leader.state.get_untracked() == ConnectionState::Live
    })
    .await;
    let (follower, by_follower) = shared_tab(&follower_owner, &stream, &key);
    follower.start(Some("0".into()));
    wait_until(
        "the follower hears the state",
        Duration::from_secs(10),
        || follower.state.get_untracked() == ConnectionState::Live,
    )
    .await;
    let mut published = Vec::new();
    for n in 0..3 {
        published.push(publish(&stream, &format!("before {n}")).await.id);
    }
    wait_until("both got the first three", Duration::from_secs(10), || {
        by_follower.borrow().len() >= 3 && by_leader.borrow().len() >= 3
    })
    .await;
    assert_eq!(*by_leader.borrow(), published);
    assert_eq!(*by_follower.borrow(), published, "relayed in order, once");

    // The leader's tab closes; what is published meanwhile reaches the follower once.
    drop(leader_owner);
    for n in 0..3 {
        published.push(publish(&stream, &format!("after {n}")).await.id);
        sleep(Duration::from_millis(100)).await;
    }
    wait_until("the follower got all six", Duration::from_secs(10), || {
        by_follower.borrow().len() >= 6
    })
    .await;
    sleep(Duration::from_millis(300)).await;
    assert_eq!(*by_follower.borrow(), published, "no gap, no duplicate");
    assert_eq!(follower.state.get_untracked(), ConnectionState::Live);
    drop(follower_owner);
}

#[wasm_bindgen_test]
async fn a_garbage_resume_id_gets_a_reset_not_an_endless_error() {
    let stream = unique_stream("garbage");
    let owner = Owner::new();
    let events = Rc::new(RefCell::new(Vec::new()));
    let sink = events.clone();
    let api = Api::new(SERVER);
    let path = format!("/events?stream={stream}");
    let connection = owner.with(|| {
        ConnectionOptions::new(move |last| api.resume_url(&path, last))
            .events(&["message", common::events::RESET])
            .connect_later(move |message| sink.borrow_mut().push(message.event))
    });
    connection.start(Some("\u{0}not an id\n".into()));
    wait_until("a reset", Duration::from_secs(10), || {
        events.borrow().iter().any(|e| e == common::events::RESET)
    })
    .await;
    assert_eq!(connection.state.get_untracked(), ConnectionState::Live);
    let sent = publish(&stream, "after the reset").await;
    wait_until("live after the reset", Duration::from_secs(10), || {
        events.borrow().iter().any(|e| e == "message")
    })
    .await;
    assert_eq!(connection.last_event_id.get_untracked(), Some(sent.id));
    drop(owner);
}

#[wasm_bindgen_test]
async fn the_feed_lists_history_then_live_notifications_once_each() {
    let stream: &'static str = Box::leak(unique_stream("feed").into_boxed_str());
    let old = publish(stream, "from history").await;
    // Used as an app uses it: inside a mounted view (whose executor runs the history load),
    // which stays for the rest of the page.
    let made = Rc::new(RefCell::new(None));
    leptos::mount::mount_to_body({
        let made = made.clone();
        move || {
            provide_context(Api::new(SERVER));
            *made.borrow_mut() = Some(use_notification_feed(vec![stream.to_owned()]));
        }
    });
    let feed = made.borrow().expect("the feed was made");
    let titles = move || {
        feed.feed().with_untracked(|list| {
            (list.items().iter())
                .map(|item| item.notification.title.clone())
                .collect::<Vec<_>>()
        })
    };
    wait_until("live", Duration::from_secs(10), || {
        feed.state().get_untracked() == ConnectionState::Live
    })
    .await;
    assert_eq!(titles(), [old.title.as_str()], "the history first");
    publish(stream, "arrived live").await;
    wait_until("the live one listed", Duration::from_secs(10), || {
        titles().len() == 2
    })
    .await;
    assert_eq!(
        titles(),
        ["arrived live", old.title.as_str()],
        "newest first, each once"
    );
    assert_eq!(feed.feed().with_untracked(|list| list.unread()), 1);
    assert!(feed.announcement().get_untracked().contains("arrived live"));
}

//! `use_notification_feed(stream)`: a stream's notifications, and the server clock, as
//! signals, for any component.
//!
//! One connection carries both (`/events?stream=…&clock_ms=1000`), and the tabs of the
//! browser that show the same stream share it ([`ConnectionOptions::shared`]): a page costs
//! one of the browser's six connections per host, however many tabs are open.
//!
//! History first, then the live stream from where that history ends (its `last_event_id`),
//! so that everything that arrives live is newer than everything listed. After a `reset` (the
//! server no longer has everything this page missed) the history is loaded again, keeping
//! what arrives live meanwhile. The position to resume from lives in the connection
//! ([`Connection::last_event_id`]) and nowhere else. Unread means "not yet marked read":
//! `localStorage` keeps the read mark (the newest notification the user marked read),
//! apart from the resume position, so it survives reloads and holds in every tab (a tab
//! that marks all read updates the others through the `storage` event).

use std::sync::Arc;

use common::{events, paths, query, History, Notification};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, Api};
use crate::connection_state::{ConnectionState, Trouble};
use crate::desktop;
use crate::event_source::{self, Connection, ConnectionOptions, SseMessage};
use crate::notification_list::NotificationList;
use crate::storage;

/// How many notifications the list keeps.
const CAP: usize = 100;
/// How many stored notifications are loaded on start and after a reset.
const HISTORY: usize = 50;
/// How often a history retry that waits checks whether the user opened a session.
const SESSION_POLL: std::time::Duration = std::time::Duration::from_millis(250);
/// How often the server clock ticks on the connection.
const CLOCK_MS: u64 = 1_000;
/// The clock ticks every second: three seconds without an event means a dead connection.
const SILENCE_LIMIT: std::time::Duration = std::time::Duration::from_secs(3);

/// A stream's notifications, live. Cheap to copy.
#[derive(Clone, Copy)]
pub struct NotificationFeed {
    stream: StoredValue<Arc<str>>,
    signals: Signals,
    connection: Connection,
}

/// What the feed shows, written by the connection's events and the history loads.
#[derive(Clone, Copy)]
struct Signals {
    feed: RwSignal<NotificationList>,
    announcement: RwSignal<String>,
    server_time: RwSignal<Option<String>>,
    /// Why the history cannot be loaded (the live connection waits for it meanwhile).
    history_trouble: RwSignal<Option<Trouble>>,
}

impl NotificationFeed {
    /// The stream's name.
    pub fn stream(&self) -> Arc<str> {
        self.stream.get_value()
    }

    /// The server's time (RFC 3339) at its latest tick, once one has arrived.
    pub fn server_time(&self) -> Signal<Option<String>> {
        self.signals.server_time.into()
    }

    /// The list: newest first, with unread marks.
    pub fn feed(&self) -> Signal<NotificationList> {
        self.signals.feed.into()
    }

    /// The state of the live connection (`connecting` until the history is in).
    pub fn state(&self) -> Signal<ConnectionState> {
        let (history, live) = (self.signals.history_trouble, self.connection.state);
        Signal::derive(move || {
            history
                .get()
                .map_or_else(|| live.get(), ConnectionState::Offline)
        })
    }

    /// A sentence about the newest arrival, for screen readers.
    pub fn announcement(&self) -> Signal<String> {
        self.signals.announcement.into()
    }

    /// Marks every listed notification read, here and in the other tabs.
    pub fn mark_all_read(&self) {
        let stream = self.stream();
        self.signals.feed.update(|feed| {
            feed.mark_all_read();
            if let Some(newest) = feed.newest() {
                storage::set(&read_key(&stream), newest);
            }
        });
    }
}

/// The read mark of a browser that has seen the stream empty: no id, so all is unread.
const NOTHING_READ: &str = "-";

/// Where the read mark of `stream` is kept.
fn read_key(stream: &str) -> String {
    format!("notify-hub:read-through:{stream}")
}

/// Loads `stream`'s history and follows it live, for as long as the calling owner lives.
pub fn use_notification_feed(stream: Arc<str>) -> NotificationFeed {
    let api = use_context::<Api>().unwrap_or_default();
    let signals = Signals {
        feed: RwSignal::new(NotificationList::new(CAP)),
        announcement: RwSignal::new(String::new()),
        server_time: RwSignal::new(None),
        history_trouble: RwSignal::new(None),
    };
    let read_mark = storage::get(&read_key(&stream));
    follow_read_marks(&stream, signals.feed);
    let connection = connection(
        &api,
        &stream,
        on_event(api.clone(), stream.clone(), signals),
    );
    spawn_local(start_after_history(
        api,
        stream.clone(),
        read_mark,
        signals,
        connection,
    ));
    NotificationFeed {
        stream: StoredValue::new(stream),
        signals,
        connection,
    }
}

/// Applies the read marks other tabs set (the `storage` event) to `feed`, while the
/// calling owner lives.
fn follow_read_marks(stream: &str, feed: RwSignal<NotificationList>) {
    let key = read_key(stream);
    let on_storage = window_event_listener(leptos::ev::storage, move |event| {
        if event.key().as_deref() == Some(key.as_str()) {
            if let Some(mark) = event.new_value() {
                feed.try_update(|f| f.mark_read_through(&mark));
            }
        }
    });
    on_cleanup(move || on_storage.remove());
}

/// What each event of the connection does: a clock tick sets the time, a `reset` reloads
/// the history (keeping what arrives meanwhile), a notification joins the list and is
/// announced when it is new to it.
fn on_event(api: Api, stream: Arc<str>, signals: Signals) -> impl Fn(SseMessage) + 'static {
    move |message: SseMessage| match message.event.as_str() {
        events::TIME => signals.server_time.set(Some(message.data)),
        events::RESET => {
            signals.feed.update(NotificationList::begin_reload);
            let (api, stream) = (api.clone(), stream.clone());
            spawn_local(async move {
                if let Some(history) = load_history(&api, &stream, signals).await {
                    signals.feed.try_update(|f| f.reload(history.notifications));
                }
            });
        }
        _ => {
            let Ok(notification) = serde_json::from_str::<Notification>(&message.data) else {
                return;
            };
            // Announce only what is new to the list, not replayed duplicates.
            if signals.feed.try_update(|f| f.push(notification.clone())) == Some(true) {
                signals
                    .announcement
                    .set(format!("New notification: {}", notification.title));
                desktop::alert(&notification);
            }
        }
    }
}

/// The stream's connection (with the clock on it), shared by the tabs that show it; it
/// waits for [`Connection::start`].
fn connection(api: &Api, stream: &str, on_event: impl Fn(SseMessage) + 'static) -> Connection {
    let path = format!(
        "{}?{}={stream}&{}={CLOCK_MS}",
        paths::EVENTS,
        query::STREAM,
        query::CLOCK_MS
    );
    let url = api.url(&path);
    let api = api.clone();
    ConnectionOptions::new(move |last| api.resume_url(&path, last))
        .events(&["message", events::RESET, events::TIME])
        .silence_limit(SILENCE_LIMIT)
        .shared(url)
        .connect_later(on_event)
}

/// Loads the history into the list, with the unread marks after `read_mark`, then starts
/// the connection where that history ends. A first visit (no read mark) counts what is
/// already there as read.
async fn start_after_history(
    api: Api,
    stream: Arc<str>,
    read_mark: Option<String>,
    signals: Signals,
    connection: Connection,
) {
    let Some(History {
        notifications,
        last_event_id,
    }) = load_history(&api, &stream, signals).await
    else {
        return;
    };
    let newest = notifications.last().map(|n| n.id.clone());
    if read_mark.is_none() {
        // What comes from now on is unread until marked read.
        storage::set(
            &read_key(&stream),
            newest.as_deref().unwrap_or(NOTHING_READ),
        );
    }
    if signals
        .feed
        .try_update(|f| f.load_history(notifications, read_mark.as_deref()))
        .is_some()
    {
        // The server's position: what is published from now on is replayed.
        connection.start(last_event_id.or(newest));
    }
}

/// The stream's newest stored notifications, retrying with the hub's backoff until the
/// server answers (starting without them would replay the whole stream as new), and
/// saying meanwhile in `history_trouble` why it cannot. A retry comes at once when the user
/// opens a session (gives a token). `None` once the feed is gone: nobody is left to show them, so
/// the retries stop.
async fn load_history(api: &Api, stream: &str, signals: Signals) -> Option<History> {
    let Signals {
        feed,
        history_trouble: trouble,
        ..
    } = signals;
    let mut delays = event_source::reconnect_delays();
    loop {
        if feed.is_disposed() {
            return None;
        }
        let session = api::session_generation();
        match api.history(stream, HISTORY).await {
            Ok(history) => {
                trouble.try_set(None);
                return Some(history);
            }
            Err(failure) => {
                trouble.try_set(Some(
                    failure
                        .status
                        .map_or(Trouble::Unreachable, Trouble::from_status),
                ));
                let pause = delays.next().unwrap_or(common::backoff::MAX_DELAY);
                leptos::logging::warn!("history of {stream}: {failure}; retrying in {pause:?}");
                let until = js_sys::Date::now() + pause.as_millis() as f64;
                while js_sys::Date::now() < until && api::session_generation() == session {
                    gloo_timers::future::sleep(SESSION_POLL).await;
                }
            }
        }
    }
}

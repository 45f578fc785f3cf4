//! `use_notification_feed(streams)`: the notifications of a set of streams (names and
//! patterns such as `alerts.*`, which may change), and the server clock, as signals, for
//! any component.
//!
//! One connection carries both (`/events?stream=…&stream=…&clock_ms=1000`), and the tabs of
//! the browser share it whatever streams each shows ([`ConnectionOptions::for_topics`],
//! [`ConnectionOptions::shared`]): the leader follows the union of their sets, and each
//! feed keeps what its own set covers. A browser costs one of its six connections per
//! host, however many tabs are open.
//!
//! History first, then the live stream from where that history ends (its `last_event_id`).
//! When the set changes, the connection follows the new one from where it was (a stream
//! added joins from the connection's start), and the history of the new set is loaded
//! again, keeping what arrives meanwhile; the list orders by publish time, so a replayed
//! older notification takes its place rather than the top. After a `reset` (the server no
//! longer has everything this page missed) the history is loaded again too. The position
//! to resume from lives in the connection ([`Connection::last_event_id`]) and nowhere else.
//! Unread means "not yet marked read": `localStorage` keeps the read mark of each set (the
//! newest notification the user marked read), apart from the resume position, so it
//! survives reloads and holds in every tab (a tab that marks all read updates the others
//! through the `storage` event); a set seen for the first time starts all read.

use common::{events, paths, query, History, Notification, Selection};
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

/// The notifications of a set of streams, live. Cheap to copy.
#[derive(Clone, Copy)]
pub struct NotificationFeed {
    streams: Signal<Vec<String>>,
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
    /// The streams followed: names and patterns.
    pub fn streams(&self) -> Signal<Vec<String>> {
        self.streams
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
        let key = self.streams.with_untracked(|streams| read_key(streams));
        self.signals.feed.update(|feed| {
            feed.mark_all_read();
            if let Some(newest) = feed.newest() {
                storage::set(&key, newest);
            }
        });
    }
}

/// The read mark of a browser that has seen the stream empty: no id, so all is unread.
const NOTHING_READ: &str = "-";

/// Where the read mark of the set `streams` is kept (for one stream, its name).
fn read_key(streams: &[String]) -> String {
    format!("notify-hub:read-through:{}", streams.join("&"))
}

/// The selection of `streams`; `None` for a set the server would refuse.
fn selection(streams: &[String]) -> Option<Selection> {
    Selection::parse(streams.iter().map(String::as_str)).ok()
}

/// Loads the history of the streams `streams` selects and follows them live, as the set
/// changes, for as long as the calling owner lives.
pub fn use_notification_feed(streams: impl Into<Signal<Vec<String>>>) -> NotificationFeed {
    let streams = streams.into();
    let api = use_context::<Api>().unwrap_or_default();
    let signals = Signals {
        feed: RwSignal::new(NotificationList::new(CAP)),
        announcement: RwSignal::new(String::new()),
        server_time: RwSignal::new(None),
        history_trouble: RwSignal::new(None),
    };
    follow_read_marks(streams, signals.feed);
    let connection = connection(&api, streams, on_event(api.clone(), streams, signals));
    spawn_local(start_after_history(
        api.clone(),
        streams,
        signals,
        connection,
    ));
    follow_set_changes(api, streams, signals);
    NotificationFeed {
        streams,
        signals,
        connection,
    }
}

/// When the set changes (after the start): drops what the new set does not cover, and
/// loads its history again, keeping what arrives meanwhile (the connection follows the
/// new set by itself).
fn follow_set_changes(api: Api, streams: Signal<Vec<String>>, signals: Signals) {
    Effect::new(move |previous: Option<Vec<String>>| {
        let now = streams.get();
        if previous.is_some_and(|previous| previous != now) {
            let covers = selection(&now);
            signals.feed.update(|feed| {
                feed.retain(|n| covers.as_ref().is_some_and(|s| s.matches(&n.stream)));
                feed.begin_reload();
            });
            let api = api.clone();
            let set = now.clone();
            spawn_local(async move {
                if let Some(history) = load_history(&api, &set, signals).await {
                    signals.feed.try_update(|f| f.reload(history.notifications));
                }
            });
        }
        now
    });
}

/// Applies the read marks other tabs set (the `storage` event) to `feed`, while the
/// calling owner lives.
fn follow_read_marks(streams: Signal<Vec<String>>, feed: RwSignal<NotificationList>) {
    let on_storage = window_event_listener(leptos::ev::storage, move |event| {
        let key = streams.with_untracked(|streams| read_key(streams));
        if event.key().as_deref() == Some(key.as_str()) {
            if let Some(mark) = event.new_value() {
                feed.try_update(|f| f.mark_read_through(&mark));
            }
        }
    });
    on_cleanup(move || on_storage.remove());
}

/// What each event of the connection does: a clock tick sets the time, a `reset` of a
/// stream of the set reloads the history (keeping what arrives meanwhile), a notification
/// of the set joins the list and is announced when it is the newest. Notifications and
/// resets of streams only other tabs follow are left to them.
fn on_event(
    api: Api,
    streams: Signal<Vec<String>>,
    signals: Signals,
) -> impl Fn(SseMessage) + 'static {
    let covers = move |stream: &str| {
        streams.with_untracked(|set| selection(set).is_some_and(|s| s.matches(stream)))
    };
    move |message: SseMessage| match message.event.as_str() {
        events::TIME => signals.server_time.set(Some(message.data)),
        events::RESET => {
            let reset = serde_json::from_str::<common::Reset>(&message.data);
            if reset.is_ok_and(|reset| !covers(&reset.stream)) {
                return;
            }
            signals.feed.update(NotificationList::begin_reload);
            let (api, set) = (api.clone(), streams.get_untracked());
            spawn_local(async move {
                if let Some(history) = load_history(&api, &set, signals).await {
                    signals.feed.try_update(|f| f.reload(history.notifications));
                }
            });
        }
        _ => {
            let Ok(notification) = serde_json::from_str::<Notification>(&message.data) else {
                return;
            };
            if !covers(&notification.stream) {
                return;
            }
            // Announce only what is new and the newest, not replayed notifications.
            let id = notification.id.clone();
            let newest = signals
                .feed
                .try_update(|f| f.push(notification.clone()) && f.newest() == Some(&id));
            if newest == Some(true) {
                signals
                    .announcement
                    .set(format!("New notification: {}", notification.title));
                desktop::alert(&notification);
            }
        }
    }
}

/// The set's connection (with the clock on it), shared by the browser's tabs on this hub,
/// for the union of their sets; it waits for [`Connection::start`].
fn connection(
    api: &Api,
    streams: Signal<Vec<String>>,
    on_event: impl Fn(SseMessage) + 'static,
) -> Connection {
    let clock = format!("{}={CLOCK_MS}", query::CLOCK_MS);
    let group = api.url(&format!("{}?{clock}", paths::EVENTS));
    let api = api.clone();
    ConnectionOptions::for_topics(streams, move |topics, last| {
        let selection = api::selection_query(topics);
        api.resume_url(&format!("{}?{selection}&{clock}", paths::EVENTS), last)
    })
    .events(&["message", events::RESET, events::TIME])
    .silence_limit(SILENCE_LIMIT)
    .shared(group)
    .connect_later(on_event)
}

/// Loads the history into the list, with the unread marks after `read_mark`, then starts
/// the connection where that history ends. A first visit (no read mark) counts what is
/// already there as read.
async fn start_after_history(
    api: Api,
    streams: Signal<Vec<String>>,
    signals: Signals,
    connection: Connection,
) {
    let set = streams.get_untracked();
    let key = read_key(&set);
    let read_mark = storage::get(&key);
    let Some(History {
        notifications,
        last_event_id,
    }) = load_history(&api, &set, signals).await
    else {
        return;
    };
    let newest = notifications.last().map(|n| n.id.clone());
    if read_mark.is_none() {
        // What comes from now on is unread until marked read.
        storage::set(&key, newest.as_deref().unwrap_or(NOTHING_READ));
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

/// The newest stored notifications of the set `streams`, retrying with the hub's backoff until the
/// server answers (starting without them would replay the whole stream as new), and
/// saying meanwhile in `history_trouble` why it cannot. A retry comes at once when the user
/// opens a session (gives a token). `None` once the feed is gone: nobody is left to show them, so
/// the retries stop.
async fn load_history(api: &Api, streams: &[String], signals: Signals) -> Option<History> {
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
        match api.history(streams, HISTORY).await {
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
                leptos::logging::warn!("history of {streams:?}: {failure}; retrying in {pause:?}");
                let until = js_sys::Date::now() + pause.as_millis() as f64;
                while js_sys::Date::now() < until && api::session_generation() == session {
                    gloo_timers::future::sleep(SESSION_POLL).await;
                }
            }
        }
    }
}

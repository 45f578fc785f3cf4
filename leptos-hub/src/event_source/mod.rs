//! A typed wrapper over the browser's `EventSource`, exposed as Leptos signals.
//!
//! The browser reconnects by itself after a network blip (sending `Last-Event-ID`), but it
//! gives up for good on some failures (readyState `CLOSED`: an HTTP error, a proxy answering
//! HTML, a server that ended a finished stream). This wrapper then opens a new `EventSource`
//! itself, after the hub's usual backoff ([`common::backoff`]), resuming with
//! `?lastEventId=` so that nothing is lost. The position to resume from lives in one place,
//! the connection's `last_event_id` signal.
//!
//! Networks that hang are bounded: an attempt that brings no event within the connect
//! timeout (no answer at all, or headers whose body a buffering proxy holds back) and a
//! connection that goes silent for longer than its limit (the one the app asks for, or
//! twice the server's heartbeat interval where that is tighter) both count as failed attempts and are reopened after the same backoff. A
//! connection is `Live` only once an event (a heartbeat counts) has arrived, and when it
//! keeps failing its state says why, from a plain request to the same URL. The connection
//! closes when the reactive owner that opened it is dropped.
//!
//! With [`ConnectionOptions::shared`], the tabs of the app that share a key share one
//! connection: see [`crate::tab_group`]. The wrapper then has one of three roles: alone
//! (no group), leader (holds the `EventSource` and posts what it receives) or follower
//! (receives from the leader, and takes over when the leader goes). A connection made with
//! [`ConnectionOptions::for_topics`] follows a set of topics (the hub's stream selectors)
//! that may change: the leader connects for the union of its group's topics and reopens,
//! resuming where it was, when that union changes; every tab gets every event of it.
//!
//! Here: the options and the connection's signals. `link.rs`: the socket, its timeouts
//! and its reopening. `leadership.rs`: the tab's role in its group.

mod leadership;
mod link;

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::Duration;

use common::backoff::ReconnectDelays;
use leptos::prelude::*;
use send_wrapper::SendWrapper;

use crate::connection_state::{ConnectionState, Trouble};
use crate::tab_group::GroupMessage;
use leadership::{Role, Tabs};
use link::Link;

/// Failed attempts in a row after which a connection counts as offline.
const OFFLINE_AFTER: u32 = 3;

/// How long an attempt may take to bring its first event, unless set otherwise.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One SSE event as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseMessage {
    /// The `event:` name (`message` when the server sent none).
    pub event: String,
    /// The `id:` of this event, or the last one seen if it had none.
    pub id: String,
    pub data: String,
}

/// The reactive view of a connection that components read. Cheap to copy.
#[derive(Clone, Copy)]
pub struct Connection {
    pub state: ReadSignal<ConnectionState>,
    /// The id of the last event received: where a reconnect resumes.
    pub last_event_id: ReadSignal<Option<String>>,
    core: StoredValue<Weak<Core>, LocalStorage>,
}

impl Connection {
    /// Opens a connection made with [`ConnectionOptions::connect_later`], resuming after
    /// `last_event_id` (`None`: from now on). Does nothing once its owner is gone.
    pub fn start(&self, last_event_id: Option<String>) {
        let Some(core) = self.core.try_get_value().and_then(|weak| weak.upgrade()) else {
            return;
        };
        core.set_last_event_id.set(last_event_id);
        if core.tabs.role.get() == Role::Alone {
            link::open(&core);
            return;
        }
        leadership::start(&core);
    }
}

/// Builds the URL to connect to, given the topics to follow (the union of the group's,
/// sorted) and the id to resume after (if any).
pub type UrlFn = Box<dyn Fn(&[String], Option<&str>) -> String>;

/// What to connect to and how; [`ConnectionOptions::connect`] opens it.
pub struct ConnectionOptions {
    url: UrlFn,
    topics: Option<Signal<Vec<String>>>,
    events: Vec<&'static str>,
    silence_limit: Option<Duration>,
    connect_timeout: Duration,
    group: Option<String>,
}

impl ConnectionOptions {
    /// A subscription to the URL that `url` builds (it gets the id to resume after).
    pub fn new(url: impl Fn(Option<&str>) -> String + 'static) -> Self {
        Self::with_url(Box::new(move |_, last| url(last)), None)
    }

    /// A subscription to `topics`, as they change, at the URL that `url` builds for a set
    /// of topics (the union of the group's, when shared) and the id to resume after. A
    /// change reopens the connection, resuming where it was.
    pub fn for_topics(
        topics: impl Into<Signal<Vec<String>>>,
        url: impl Fn(&[String], Option<&str>) -> String + 'static,
    ) -> Self {
        Self::with_url(Box::new(url), Some(topics.into()))
    }

    fn with_url(url: UrlFn, topics: Option<Signal<Vec<String>>>) -> Self {
        Self {
            url,
            topics,
            events: Vec::new(),
            silence_limit: None,
            connect_timeout: CONNECT_TIMEOUT,
            group: None,
        }
    }

    /// Share the connection with the other tabs of this browser that use the same `key`
    /// (normally the URL without the resume position and the topics): one of them
    /// connects, for the union of their topics, and the others receive its events. Where
    /// the browser cannot, each tab connects alone.
    pub fn shared(mut self, key: impl Into<String>) -> Self {
        self.group = Some(key.into());
        self
    }

    /// Give up on an attempt that brings no event within `timeout` (default
    /// [`CONNECT_TIMEOUT`]), and retry after the backoff.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The SSE event names to deliver (`"message"` for unnamed events).
    pub fn events(mut self, names: &[&'static str]) -> Self {
        self.events = names.to_vec();
        self
    }

    /// Treat a connection that stays silent this long as dead and reopen it. Heartbeat
    /// events (`heartbeat`, data `{"interval_ms": N}`) may tighten it to twice their
    /// interval ([`common::Heartbeat::tighten`]), never loosen it; without it, they set it.
    pub fn silence_limit(mut self, limit: Duration) -> Self {
        self.silence_limit = Some(limit);
        self
    }

    /// Opens the connection, for events from now on; it lives as long as the current
    /// reactive owner. Each event is passed to `on_event` in order, none coalesced.
    pub fn connect(self, on_event: impl Fn(SseMessage) + 'static) -> Connection {
        let connection = self.connect_later(on_event);
        connection.start(None);
        connection
    }

    /// Like [`ConnectionOptions::connect`], but the connection stays in `Connecting` until
    /// [`Connection::start`] says where to resume (e.g. once history has loaded).
    pub fn connect_later(self, on_event: impl Fn(SseMessage) + 'static) -> Connection {
        let (state, set_state) = signal(ConnectionState::Connecting);
        let (last_event_id, set_last_event_id) = signal(None);
        let own = self.topics.map(|t| t.get_untracked()).unwrap_or_default();
        let core = Rc::new(Core {
            url: self.url,
            topics: RefCell::new(sorted(own.clone())),
            own: RefCell::new(own),
            events: self.events,
            on_event: Box::new(on_event),
            state,
            set_state,
            last_event_id,
            set_last_event_id,
            link: Link::new(self.silence_limit, self.connect_timeout),
            tabs: Tabs::default(),
        });
        if let Some(key) = self.group {
            leadership::join(&core, &key);
        }
        if let Some(topics) = self.topics {
            let weak = Rc::downgrade(&core);
            Effect::new(move |_| {
                let topics = topics.get();
                if let Some(core) = weak.upgrade() {
                    if *core.own.borrow() != topics {
                        *core.own.borrow_mut() = topics;
                        leadership::topics_changed(&core);
                    }
                }
            });
        }
        let handle = StoredValue::new_local(Rc::downgrade(&core));
        let guard = SendWrapper::new(core);
        on_cleanup(move || guard.close());
        Connection {
            state,
            last_event_id,
            core: handle,
        }
    }
}

/// Everything one connection needs across reconnects: what it delivers to whom, its
/// state, the socket ([`Link`]) and the tab's part in its group ([`Tabs`]). Listeners and
/// timers hold it weakly.
struct Core {
    url: UrlFn,
    /// What the socket follows (or will, once opened): the union of the group's topics.
    topics: RefCell<Vec<String>>,
    /// This tab's own topics.
    own: RefCell<Vec<String>>,
    events: Vec<&'static str>,
    on_event: Box<dyn Fn(SseMessage)>,
    state: ReadSignal<ConnectionState>,
    set_state: WriteSignal<ConnectionState>,
    last_event_id: ReadSignal<Option<String>>,
    set_last_event_id: WriteSignal<Option<String>>,
    link: Link,
    tabs: Tabs,
}

/// The hub's reconnect delays, with jitter seeded from the browser's randomness.
pub(crate) fn reconnect_delays() -> ReconnectDelays {
    common::backoff::reconnect_delays(Some(js_sys::Math::random().to_bits()))
}

/// `topics` sorted and each once: a set, as the union of a group's topics is.
fn sorted(mut topics: Vec<String>) -> Vec<String> {
    topics.sort();
    topics.dedup();
    topics
}

impl Core {
    /// The URL for the topics followed now, resuming after the last id seen.
    fn url(&self) -> String {
        let topics = self.topics.borrow();
        (self.last_event_id).with_untracked(|last| (self.url)(&topics, last.as_deref()))
    }

    /// Follows `topics` from now on: a socket that is open, or waits to reopen, reopens
    /// at once for them, resuming where it was.
    fn follow(self: &Rc<Self>, topics: Vec<String>) {
        if *self.topics.borrow() == topics {
            return;
        }
        *self.topics.borrow_mut() = topics;
        if self.link.is_open() {
            self.link.close();
            link::open(self);
        }
    }

    /// Stops for good: closes the socket and cancels any scheduled reconnect.
    fn close(&self) {
        self.link.close();
        self.tabs.close();
    }

    /// Shows `state` here and, when leading, in the group's other tabs.
    fn show(&self, state: ConnectionState) {
        self.set_state.set(state);
        self.post(&GroupMessage::State { state });
    }

    /// Posts `message` to the group, if this tab leads one.
    fn post(&self, message: &GroupMessage) {
        self.tabs.post(message);
    }

    /// Counts a failed attempt; `trouble` is what is known of why (else a request to the
    /// URL finds out, once the connection counts as offline).
    fn failed(self: &Rc<Self>, trouble: Option<Trouble>) {
        self.link.live.set(false);
        let failures = self.link.failures.get() + 1;
        self.link.failures.set(failures);
        if failures < OFFLINE_AFTER {
            self.show(ConnectionState::Reconnecting);
            return;
        }
        if let Some(trouble) = trouble {
            self.show(ConnectionState::Offline(trouble));
            return;
        }
        let url = self.url();
        let weak = Rc::downgrade(self);
        wasm_bindgen_futures::spawn_local(async move {
            let trouble = link::diagnose(&url).await;
            if let Some(core) = weak.upgrade().filter(|core| !core.link.live.get()) {
                core.show(ConnectionState::Offline(trouble));
            }
        });
    }

    /// The first event of an attempt: the connection is live, the backoff starts afresh.
    fn got_event(self: &Rc<Self>) {
        if !self.link.live.replace(true) {
            self.link.failures.set(0);
            *self.link.delays.borrow_mut() = reconnect_delays();
            self.show(ConnectionState::Live);
        }
        link::arm_watchdog(self);
    }
}

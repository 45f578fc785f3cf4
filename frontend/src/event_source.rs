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
//! With [`ConnectionOptions::shared`], the tabs of the app that follow the same URL share one
//! connection: see [`crate::tab_group`]. The wrapper then has one of three roles: alone
//! (no group), leader (holds the `EventSource` and posts what it receives) or follower
//! (receives from the leader, and takes over when the leader goes).

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

use common::backoff::ReconnectDelays;
use common::{events, Heartbeat};
use gloo_timers::callback::{Interval, Timeout};
use leptos::prelude::*;
use send_wrapper::SendWrapper;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{EventSource, MessageEvent};

use crate::connection_state::{ConnectionState, Trouble};
use crate::tab_group::{self, GroupMessage, TabGroup};

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

impl From<&SseMessage> for GroupMessage {
    fn from(message: &SseMessage) -> Self {
        GroupMessage::Event {
            event: message.event.clone(),
            id: message.id.clone(),
            data: message.data.clone(),
        }
    }
}

/// The reactive view of a connection that components read. Cheap to copy.
#[derive(Clone, Copy)]
pub struct Connection {
    pub state: ReadSignal<ConnectionState>,
    /// The id of the last event received: where a reconnect resumes.
    pub last_event_id: ReadSignal<Option<String>>,
    shared: StoredValue<Weak<Core>, LocalStorage>,
}

impl Connection {
    /// Opens a connection made with [`ConnectionOptions::connect_later`], resuming after
    /// `last_event_id` (`None`: from now on). Does nothing once its owner is gone.
    pub fn start(&self, last_event_id: Option<String>) {
        let Some(shared) = self.shared.try_get_value().and_then(|weak| weak.upgrade()) else {
            return;
        };
        shared.set_last_event_id.set(last_event_id);
        shared.started.set(true);
        if shared.role.get() == Role::Alone {
            open(&shared);
            return;
        }
        for message in shared.early.take() {
            receive(&shared, message);
        }
        watch_leader(&shared);
        request_lead(&shared, false);
    }
}

/// Builds the URL to connect to, given the id to resume after (if any).
pub type UrlFn = Box<dyn Fn(Option<&str>) -> String>;

/// What to connect to and how; [`ConnectionOptions::connect`] opens it.
pub struct ConnectionOptions {
    url: UrlFn,
    events: Vec<&'static str>,
    silence_limit: Option<Duration>,
    connect_timeout: Duration,
    group: Option<String>,
}

impl ConnectionOptions {
    /// A subscription to the URL that `url` builds (it gets the id to resume after).
    pub fn new(url: impl Fn(Option<&str>) -> String + 'static) -> Self {
        Self {
            url: Box::new(url),
            events: Vec::new(),
            silence_limit: None,
            connect_timeout: CONNECT_TIMEOUT,
            group: None,
        }
    }

    /// Share the connection with the other tabs of this browser that follow the same
    /// `key` (normally the URL without the resume position): one of them connects, the
    /// others receive its events. Where the browser cannot, each tab connects alone.
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
    /// interval ([`Heartbeat::tighten`]), never loosen it; without it, they set it.
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
        let shared = Rc::new(Core {
            url: self.url,
            events: self.events,
            on_event: Box::new(on_event),
            state,
            set_state,
            last_event_id,
            set_last_event_id,
            source: RefCell::new(None),
            retry: RefCell::new(None),
            watchdog: RefCell::new(None),
            asked_silence: self.silence_limit,
            silence_limit: Cell::new(self.silence_limit),
            connect_timeout: self.connect_timeout,
            live: Cell::new(false),
            failures: Cell::new(0),
            delays: RefCell::new(reconnect_delays()),
            role: Cell::new(Role::Alone),
            group: RefCell::new(None),
            started: Cell::new(false),
            early: RefCell::new(Vec::new()),
            beacon: RefCell::new(None),
            leader_watch: RefCell::new(None),
        });
        if let Some(key) = self.group {
            let weak = Rc::downgrade(&shared);
            let group = TabGroup::join(&key, move |message| {
                if let Some(shared) = weak.upgrade() {
                    from_group(&shared, message);
                }
            });
            if group.is_some() {
                shared.role.set(Role::Follower);
            }
            *shared.group.borrow_mut() = group;
        }
        let handle = StoredValue::new_local(Rc::downgrade(&shared));
        let guard = SendWrapper::new(shared);
        on_cleanup(move || guard.close());
        Connection {
            state,
            last_event_id,
            shared: handle,
        }
    }
}

/// Everything one connection needs across reconnects. Listeners hold it weakly.
struct Core {
    url: UrlFn,
    events: Vec<&'static str>,
    on_event: Box<dyn Fn(SseMessage)>,
    state: ReadSignal<ConnectionState>,
    set_state: WriteSignal<ConnectionState>,
    last_event_id: ReadSignal<Option<String>>,
    set_last_event_id: WriteSignal<Option<String>>,
    source: RefCell<Option<Source>>,
    retry: RefCell<Option<Timeout>>,
    watchdog: RefCell<Option<Timeout>>,
    /// The limit the app asked for ([`ConnectionOptions::silence_limit`]).
    asked_silence: Option<Duration>,
    /// The limit in force: the asked one, tightened by the heartbeats heard.
    silence_limit: Cell<Option<Duration>>,
    connect_timeout: Duration,
    /// Whether the current attempt has brought an event yet.
    live: Cell<bool>,
    /// Failed attempts since the last successful open.
    failures: Cell<u32>,
    /// The delays before the next reopens; started afresh on every successful open.
    delays: RefCell<ReconnectDelays>,
    role: Cell<Role>,
    group: RefCell<Option<TabGroup>>,
    /// Whether [`Connection::start`] has been called.
    started: Cell<bool>,
    /// Events from the group's leader that came before [`Connection::start`].
    early: RefCell<Vec<SseMessage>>,
    /// The leader's sign of life to the group.
    beacon: RefCell<Option<Interval>>,
    /// A follower's countdown to taking over from a silent leader.
    leader_watch: RefCell<Option<Timeout>>,
}

/// How this tab takes part in its connection (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Alone,
    Leader,
    Follower,
}

/// The hub's reconnect delays, with jitter seeded from the browser's randomness.
pub(crate) fn reconnect_delays() -> ReconnectDelays {
    common::backoff::reconnect_delays(Some(js_sys::Math::random().to_bits()))
}

impl Core {
    /// Stops for good: closes the socket and cancels any scheduled reconnect.
    fn close(&self) {
        self.retry.borrow_mut().take();
        self.watchdog.borrow_mut().take();
        self.source.borrow_mut().take();
        self.beacon.borrow_mut().take();
        self.leader_watch.borrow_mut().take();
        self.group.borrow_mut().take();
    }

    /// Shows `state` here and, when leading, in the group's other tabs.
    fn show(&self, state: ConnectionState) {
        self.set_state.set(state);
        self.post(&GroupMessage::State { state });
    }

    /// Posts `message` to the group, if this tab leads one.
    fn post(&self, message: &GroupMessage) {
        if self.role.get() == Role::Leader {
            if let Some(group) = self.group.borrow().as_ref() {
                group.post(message);
            }
        }
    }

    /// Counts a failed attempt; `trouble` is what is known of why (else a request to the
    /// URL finds out, once the connection counts as offline).
    fn failed(self: &Rc<Self>, trouble: Option<Trouble>) {
        self.live.set(false);
        let failures = self.failures.get() + 1;
        self.failures.set(failures);
        if failures < OFFLINE_AFTER {
            self.show(ConnectionState::Reconnecting);
            return;
        }
        if let Some(trouble) = trouble {
            self.show(ConnectionState::Offline(trouble));
            return;
        }
        let url = self
            .last_event_id
            .with_untracked(|last| (self.url)(last.as_deref()));
        let weak = Rc::downgrade(self);
        wasm_bindgen_futures::spawn_local(async move {
            let trouble = diagnose(&url).await;
            if let Some(shared) = weak.upgrade().filter(|shared| !shared.live.get()) {
                shared.show(ConnectionState::Offline(trouble));
            }
        });
    }

    /// The first event of an attempt: the connection is live, the backoff starts afresh.
    fn got_event(self: &Rc<Self>) {
        if !self.live.replace(true) {
            self.failures.set(0);
            *self.delays.borrow_mut() = reconnect_delays();
            self.show(ConnectionState::Live);
        }
        arm_watchdog(self);
    }
}

/// Why `url` cannot be streamed: one plain request, abandoned once its status is in (or
/// after [`CONNECT_TIMEOUT`]).
async fn diagnose(url: &str) -> Trouble {
    let Ok(abort) = web_sys::AbortController::new() else {
        return Trouble::Unreachable;
    };
    let timed_out = Rc::new(Cell::new(false));
    let timer = {
        let (abort, timed_out) = (abort.clone(), timed_out.clone());
        Timeout::new(CONNECT_TIMEOUT.as_millis() as u32, move || {
            timed_out.set(true);
            abort.abort();
        })
    };
    let request = gloo_net::http::Request::get(url)
        .abort_signal(Some(&abort.signal()))
        .send()
        .await;
    drop(timer);
    abort.abort();
    match request {
        Ok(response) if !response.ok() => Trouble::from_status(response.status()),
        Ok(_) => Trouble::NoEvents,
        Err(_) if timed_out.get() => Trouble::NoEvents,
        Err(_) => Trouble::Unreachable,
    }
}

/// An open `EventSource` and its listeners; closing it is dropping it.
struct Source {
    source: EventSource,
    _listeners: Vec<Closure<dyn FnMut(web_sys::Event)>>,
}

impl Drop for Source {
    fn drop(&mut self) {
        self.source.close();
    }
}

/// Opens a new `EventSource`, resuming after the last id seen.
fn open(shared: &Rc<Core>) {
    let url = shared
        .last_event_id
        .with_untracked(|last| (shared.url)(last.as_deref()));
    let Ok(source) = EventSource::new(&url) else {
        shared.failed(Some(Trouble::Unreachable));
        schedule_reopen(shared);
        return;
    };
    shared.live.set(false);
    let mut listeners = Vec::new();
    let mut listen = |name: &str, handler: Box<dyn FnMut(web_sys::Event)>| {
        let closure = Closure::wrap(handler);
        source
            .add_event_listener_with_callback(name, closure.as_ref().unchecked_ref())
            .expect("EventSource accepts listeners");
        listeners.push(closure);
    };

    let weak = Rc::downgrade(shared);
    listen(
        events::HEARTBEAT,
        Box::new(move |event| {
            let Some(shared) = weak.upgrade() else { return };
            let beat = event
                .dyn_ref::<MessageEvent>()
                .and_then(|e| e.data().as_string())
                .and_then(|data| serde_json::from_str::<Heartbeat>(&data).ok());
            if let Some(beat) = beat {
                shared
                    .silence_limit
                    .set(Some(beat.tighten(shared.asked_silence)));
            }
            shared.got_event();
        }),
    );
    for name in &shared.events {
        let weak = Rc::downgrade(shared);
        listen(name, Box::new(move |event| deliver(&weak, event)));
    }
    let weak = Rc::downgrade(shared);
    listen(
        "error",
        Box::new(move |event| {
            let Some(shared) = weak.upgrade() else { return };
            let closed = event
                .target()
                .and_then(|t| t.dyn_into::<EventSource>().ok())
                .is_none_or(|s| s.ready_state() == EventSource::CLOSED);
            if closed {
                shared.failed(None);
                // The browser gave up on this one: open a new one ourselves, after the
                // backoff (the watchdog has nothing left to watch until then).
                shared.watchdog.borrow_mut().take();
                shared.source.borrow_mut().take();
                schedule_reopen(&shared);
            } else {
                // The browser reconnects by itself (and sends `Last-Event-ID`).
                shared.failed(None);
            }
        }),
    );
    *shared.source.borrow_mut() = Some(Source {
        source,
        _listeners: listeners,
    });
    arm_watchdog(shared);
}

/// Hands one received event to the owner and remembers its id.
fn deliver(shared: &Weak<Core>, event: web_sys::Event) {
    let (Some(shared), Ok(event)) = (shared.upgrade(), event.dyn_into::<MessageEvent>()) else {
        return;
    };
    shared.got_event();
    let id = event.last_event_id();
    if !id.is_empty()
        && shared
            .last_event_id
            .with_untracked(|last| last.as_deref() != Some(id.as_str()))
    {
        shared.set_last_event_id.set(Some(id.clone()));
    }
    let message = SseMessage {
        event: event.type_(),
        id,
        data: event.data().as_string().unwrap_or_default(),
    };
    shared.post(&GroupMessage::from(&message));
    (shared.on_event)(message);
}

/// Hands an event the group's leader received to the owner, and remembers its id: where
/// this tab resumes if it takes over.
fn receive(shared: &Rc<Core>, message: SseMessage) {
    if !message.id.is_empty() {
        shared.set_last_event_id.set(Some(message.id.clone()));
    }
    (shared.on_event)(message);
}

/// What another tab of the group said.
fn from_group(shared: &Rc<Core>, message: GroupMessage) {
    match (shared.role.get(), message) {
        (Role::Leader, GroupMessage::Hello) => shared.post(&GroupMessage::State {
            state: shared.state.get_untracked(),
        }),
        (Role::Follower, GroupMessage::State { state }) => {
            shared.set_state.set(state);
            watch_leader(shared);
        }
        (Role::Follower, GroupMessage::Event { event, id, data }) => {
            let message = SseMessage { event, id, data };
            if shared.started.get() {
                receive(shared, message);
                watch_leader(shared);
            } else {
                shared.early.borrow_mut().push(message);
            }
        }
        _ => {}
    }
}

/// Queues this tab for the group's lock (`steal`: takes it now). Once granted, the tab
/// connects, resuming after the last id the group received, and beacons its state.
fn request_lead(shared: &Rc<Core>, steal: bool) {
    let group = shared.group.borrow();
    let Some(group) = group.as_ref() else { return };
    let (on_lead, on_lost) = (Rc::downgrade(shared), Rc::downgrade(shared));
    group.request_lead(
        steal,
        move || {
            let Some(shared) = on_lead.upgrade() else {
                return false;
            };
            shared.role.set(Role::Leader);
            shared.leader_watch.borrow_mut().take();
            let beacon = Rc::downgrade(&shared);
            *shared.beacon.borrow_mut() = Some(Interval::new(
                tab_group::BEACON_EVERY.as_millis() as u32,
                move || {
                    if let Some(shared) = beacon.upgrade() {
                        shared.post(&GroupMessage::State {
                            state: shared.state.get_untracked(),
                        });
                    }
                },
            ));
            open(&shared);
            true
        },
        move || {
            // Another tab took over (this one was frozen or too slow): follow it.
            let Some(shared) = on_lost.upgrade() else {
                return;
            };
            shared.role.set(Role::Follower);
            shared.beacon.borrow_mut().take();
            shared.retry.borrow_mut().take();
            shared.watchdog.borrow_mut().take();
            shared.source.borrow_mut().take();
            watch_leader(&shared);
            request_lead(&shared, false);
        },
    );
}

/// (Re)starts a follower's countdown: a leader silent for [`tab_group::LEADER_SILENCE`]
/// is replaced by this tab.
fn watch_leader(shared: &Rc<Core>) {
    let weak = Rc::downgrade(shared);
    let timer = Timeout::new(tab_group::LEADER_SILENCE.as_millis() as u32, move || {
        if let Some(shared) = weak.upgrade().filter(|s| s.role.get() == Role::Follower) {
            shared.leader_watch.borrow_mut().take();
            request_lead(&shared, true);
        }
    });
    *shared.leader_watch.borrow_mut() = Some(timer);
}

/// (Re)starts the countdown after which an attempt without a first event, or a live
/// connection that went silent, is dropped and reopened after the backoff.
fn arm_watchdog(shared: &Rc<Core>) {
    let limit = if shared.live.get() {
        let Some(limit) = shared.silence_limit.get() else {
            shared.watchdog.borrow_mut().take();
            return;
        };
        limit
    } else {
        shared.connect_timeout
    };
    let weak = Rc::downgrade(shared);
    let timer = Timeout::new(limit.as_millis() as u32, move || {
        if let Some(shared) = weak.upgrade() {
            // Half-open, hanging or held back by a proxy: nothing arrives. Start over.
            let trouble = (!shared.live.get()).then_some(Trouble::NoEvents);
            shared.source.borrow_mut().take();
            shared.failed(trouble);
            schedule_reopen(&shared);
        }
    });
    // Replacing the previous countdown cancels it.
    *shared.watchdog.borrow_mut() = Some(timer);
}

/// Reopens after the next backoff delay.
fn schedule_reopen(shared: &Rc<Core>) {
    let delay = shared
        .delays
        .borrow_mut()
        .next()
        .unwrap_or(common::backoff::MAX_DELAY);
    let weak = Rc::downgrade(shared);
    let timer = Timeout::new(delay.as_millis() as u32, move || {
        if let Some(shared) = weak.upgrade() {
            shared.retry.borrow_mut().take();
            open(&shared);
        }
    });
    *shared.retry.borrow_mut() = Some(timer);
}

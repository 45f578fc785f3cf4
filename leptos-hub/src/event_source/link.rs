//! One resilient `EventSource`: the socket and its listeners, the connect timeout and the
//! silence watchdog, and reopening after the backoff, resuming after the last id seen.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

use common::backoff::ReconnectDelays;
use common::{events, Heartbeat};
use gloo_timers::callback::Timeout;
use leptos::prelude::*;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{EventSource, MessageEvent};

use super::{reconnect_delays, Core, SseMessage, CONNECT_TIMEOUT};
use crate::connection_state::Trouble;
use crate::tab_group::GroupMessage;

/// The socket of a connection and what decides when to give up on it and reopen.
pub(super) struct Link {
    source: RefCell<Option<Source>>,
    retry: RefCell<Option<Timeout>>,
    watchdog: RefCell<Option<Timeout>>,
    /// The limit the app asked for ([`super::ConnectionOptions::silence_limit`]).
    asked_silence: Option<Duration>,
    /// The limit in force: the asked one, tightened by the heartbeats heard.
    silence_limit: Cell<Option<Duration>>,
    connect_timeout: Duration,
    /// Whether the current attempt has brought an event yet.
    pub(super) live: Cell<bool>,
    /// Failed attempts since the last successful open.
    pub(super) failures: Cell<u32>,
    /// The delays before the next reopens; started afresh on every successful open.
    pub(super) delays: RefCell<ReconnectDelays>,
}

impl Link {
    /// No socket yet; `asked_silence` and `connect_timeout` as the app set them.
    pub(super) fn new(asked_silence: Option<Duration>, connect_timeout: Duration) -> Self {
        Self {
            source: RefCell::new(None),
            retry: RefCell::new(None),
            watchdog: RefCell::new(None),
            asked_silence,
            silence_limit: Cell::new(asked_silence),
            connect_timeout,
            live: Cell::new(false),
            failures: Cell::new(0),
            delays: RefCell::new(reconnect_delays()),
        }
    }

    /// Whether a socket is open or a reopen is scheduled (the connection has started and
    /// not been closed).
    pub(super) fn is_open(&self) -> bool {
        self.source.borrow().is_some() || self.retry.borrow().is_some()
    }

    /// Closes the socket and cancels its countdowns and any scheduled reopen.
    pub(super) fn close(&self) {
        self.retry.borrow_mut().take();
        self.watchdog.borrow_mut().take();
        self.source.borrow_mut().take();
    }
}

/// Why `url` cannot be streamed: one plain request, abandoned once its status is in (or
/// after [`CONNECT_TIMEOUT`]).
pub(super) async fn diagnose(url: &str) -> Trouble {
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
pub(super) fn open(core: &Rc<Core>) {
    let Ok(source) = EventSource::new(&core.url()) else {
        core.failed(Some(Trouble::Unreachable));
        schedule_reopen(core);
        return;
    };
    core.link.live.set(false);
    let mut listeners = Vec::new();
    let mut listen = |name: &str, handler: Box<dyn FnMut(web_sys::Event)>| {
        let closure = Closure::wrap(handler);
        source
            .add_event_listener_with_callback(name, closure.as_ref().unchecked_ref())
            .expect("EventSource accepts listeners");
        listeners.push(closure);
    };

    let weak = Rc::downgrade(core);
    listen(
        events::HEARTBEAT,
        Box::new(move |event| {
            let Some(core) = weak.upgrade() else { return };
            let beat = event
                .dyn_ref::<MessageEvent>()
                .and_then(|e| e.data().as_string())
                .and_then(|data| serde_json::from_str::<Heartbeat>(&data).ok());
            if let Some(beat) = beat {
                core.link
                    .silence_limit
                    .set(Some(beat.tighten(core.link.asked_silence)));
            }
            core.got_event();
        }),
    );
    for name in &core.events {
        let weak = Rc::downgrade(core);
        listen(name, Box::new(move |event| deliver(&weak, event)));
    }
    let weak = Rc::downgrade(core);
    listen(
        "error",
        Box::new(move |event| {
            let Some(core) = weak.upgrade() else { return };
            let closed = event
                .target()
                .and_then(|t| t.dyn_into::<EventSource>().ok())
                .is_none_or(|s| s.ready_state() == EventSource::CLOSED);
            if closed {
                core.failed(None);
                // The browser gave up on this one: open a new one ourselves, after the
                // backoff (the watchdog has nothing left to watch until then).
                core.link.watchdog.borrow_mut().take();
                core.link.source.borrow_mut().take();
                schedule_reopen(&core);
            } else {
                // The browser reconnects by itself (and sends `Last-Event-ID`).
                core.failed(None);
            }
        }),
    );
    *core.link.source.borrow_mut() = Some(Source {
        source,
        _listeners: listeners,
    });
    arm_watchdog(core);
}

/// Hands one received event to the owner and remembers its id.
fn deliver(core: &Weak<Core>, event: web_sys::Event) {
    let (Some(core), Ok(event)) = (core.upgrade(), event.dyn_into::<MessageEvent>()) else {
        return;
    };
    core.got_event();
    let id = event.last_event_id();
    if !id.is_empty()
        && core
            .last_event_id
            .with_untracked(|last| last.as_deref() != Some(id.as_str()))
    {
        core.set_last_event_id.set(Some(id.clone()));
    }
    let message = SseMessage {
        event: event.type_(),
        id,
        data: event.data().as_string().unwrap_or_default(),
    };
    core.post(&GroupMessage::from(&message));
    (core.on_event)(message);
}

/// (Re)starts the countdown after which an attempt without a first event, or a live
/// connection that went silent, is dropped and reopened after the backoff.
pub(super) fn arm_watchdog(core: &Rc<Core>) {
    let limit = if core.link.live.get() {
        let Some(limit) = core.link.silence_limit.get() else {
            core.link.watchdog.borrow_mut().take();
            return;
        };
        limit
    } else {
        core.link.connect_timeout
    };
    let weak = Rc::downgrade(core);
    let timer = Timeout::new(limit.as_millis() as u32, move || {
        if let Some(core) = weak.upgrade() {
            // Half-open, hanging or held back by a proxy: nothing arrives. Start over.
            let trouble = (!core.link.live.get()).then_some(Trouble::NoEvents);
            core.link.source.borrow_mut().take();
            core.failed(trouble);
            schedule_reopen(&core);
        }
    });
    // Replacing the previous countdown cancels it.
    *core.link.watchdog.borrow_mut() = Some(timer);
}

/// Reopens after the next backoff delay.
fn schedule_reopen(core: &Rc<Core>) {
    let delay = core
        .link
        .delays
        .borrow_mut()
        .next()
        .unwrap_or(common::backoff::MAX_DELAY);
    let until = js_sys::Date::now() + delay.as_millis() as f64;
    wait_to_reopen(core, until, crate::api::session_generation());
}

/// How often a connection waiting to reopen looks whether the tab opened a session.
const SESSION_CHECK_MS: f64 = 500.0;

/// Reopens at `until` (ms since the epoch), or as soon as the tab opens a session other
/// than `session`: a stream refused for an expired token (`token-expired`, then `401`)
/// comes back as soon as the user gives a new one, not at the end of a backoff that may
/// have grown to half a minute.
fn wait_to_reopen(core: &Rc<Core>, until: f64, session: u32) {
    let left = (until - js_sys::Date::now()).clamp(0.0, SESSION_CHECK_MS);
    let weak = Rc::downgrade(core);
    let timer = Timeout::new(left as u32, move || {
        let Some(core) = weak.upgrade() else { return };
        core.link.retry.borrow_mut().take();
        if js_sys::Date::now() >= until || crate::api::session_generation() != session {
            open(&core);
        } else {
            wait_to_reopen(&core, until, session);
        }
    });
    *core.link.retry.borrow_mut() = Some(timer);
}

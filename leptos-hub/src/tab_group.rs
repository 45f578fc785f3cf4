//! One server connection per browser, however many tabs: the tabs that share a key (the
//! hub's URL, whatever streams each shows) form a group, and only one of them, the leader,
//! holds the `EventSource`, for the union of the streams its tabs follow.
//!
//! Over plain HTTP/1.1 a browser opens at most six connections to one host; with one
//! stream per tab, the seventh tab would wait forever. The leader is elected with the Web
//! Locks API: every tab of the group requests the lock `notify-hub:<key>`, the browser grants
//! it to one, and queues the others. The leader posts every event it receives, and its
//! connection state every second, on the `BroadcastChannel` of the same name; followers take
//! the events from there, in the leader's order. When the leader's tab closes, the browser
//! hands the lock to the next tab in the queue, which connects and resumes after the last
//! id the group received: nothing is lost, and the feed drops what it already has. A leader
//! whose tab froze goes quiet: a follower that hears nothing for [`LEADER_SILENCE`] steals
//! the lock, and the old leader, if it wakes, steps down.
//!
//! `navigator.locks` exists only in secure contexts (HTTPS, or `localhost`/`127.0.0.1`):
//! elsewhere, and where `BroadcastChannel` is missing, [`TabGroup::join`] says so and each
//! tab connects on its own.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use wasm_bindgen::closure::Closure;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BroadcastChannel, MessageEvent};

use crate::connection_state::ConnectionState;

/// How often the leader tells the group it is alive (with its connection state).
pub const BEACON_EVERY: Duration = Duration::from_secs(1);
/// How long followers wait without a word from the leader before they take over.
pub const LEADER_SILENCE: Duration = Duration::from_secs(4);

#[wasm_bindgen]
extern "C" {
    /// `navigator.locks.request(name, options, callback)`; bound here because web-sys
    /// exposes `LockManager` only under `web_sys_unstable_apis`.
    #[wasm_bindgen(js_namespace = ["navigator", "locks"], js_name = request, catch)]
    fn request_lock(
        name: &str,
        options: &JsValue,
        callback: &JsValue,
    ) -> Result<js_sys::Promise, JsValue>;
}

/// What tabs of a group tell each other. Posted as a plain JS array (structured clone),
/// `["event", name, id, data]`, `["state", kind, detail]`, `["want", tab, topics…]` or
/// `["hello"]`: no JSON codec in the bundle for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupMessage {
    /// An event the leader received, in its order.
    Event {
        event: String,
        id: String,
        data: String,
    },
    /// The leader's connection state; also its sign of life.
    State { state: ConnectionState },
    /// A tab joined and wants to hear the state now.
    Hello,
    /// What tab `tab` follows (none: it left), for the leader's union.
    Want { tab: String, topics: Vec<String> },
}

impl GroupMessage {
    /// The message as the array posted on the channel.
    fn to_js(&self) -> JsValue {
        let parts: Vec<String> = match self {
            GroupMessage::Event { event, id, data } => {
                vec!["event".into(), event.clone(), id.clone(), data.clone()]
            }
            GroupMessage::State { state } => {
                let (kind, detail) = state.code();
                vec!["state".into(), kind.into(), detail]
            }
            GroupMessage::Hello => vec!["hello".into()],
            GroupMessage::Want { tab, topics } => ["want".into(), tab.clone()]
                .into_iter()
                .chain(topics.iter().cloned())
                .collect(),
        };
        parts
            .into_iter()
            .map(JsValue::from)
            .collect::<js_sys::Array>()
            .into()
    }

    /// The message in a posted array; `None` for anything else.
    fn from_js(value: &JsValue) -> Option<Self> {
        let parts: Vec<String> = js_sys::Array::from(value)
            .iter()
            .map(|part| part.as_string())
            .collect::<Option<_>>()?;
        let part = |n: usize| parts.get(n).cloned();
        Some(match parts.first()?.as_str() {
            "event" => GroupMessage::Event {
                event: part(1)?,
                id: part(2)?,
                data: part(3)?,
            },
            "state" => GroupMessage::State {
                state: ConnectionState::from_code(&part(1)?, &part(2)?)?,
            },
            "hello" => GroupMessage::Hello,
            "want" => GroupMessage::Want {
                tab: part(1)?,
                topics: parts[2..].to_vec(),
            },
            _ => return None,
        })
    }
}

/// This tab's membership of a group: the channel, and the lock once it holds it.
pub struct TabGroup {
    name: String,
    channel: BroadcastChannel,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    /// Resolving it releases the lock (set while this tab leads).
    release: Rc<RefCell<Option<js_sys::Function>>>,
}

/// Whether this browser can elect a leader among tabs.
pub fn supported() -> bool {
    let global = js_sys::global();
    let locks = js_sys::Reflect::get(&global, &"navigator".into())
        .and_then(|navigator| js_sys::Reflect::get(&navigator, &"locks".into()))
        .is_ok_and(|locks| locks.is_object());
    locks && js_sys::Reflect::has(&global, &"BroadcastChannel".into()).unwrap_or(false)
}

impl TabGroup {
    /// Joins the group `key` (a tab following the same URL): `on_message` gets what the
    /// other tabs post. `None` where tabs cannot share (see the module docs).
    pub fn join(key: &str, on_message: impl Fn(GroupMessage) + 'static) -> Option<Self> {
        if !supported() {
            return None;
        }
        let name = format!("notify-hub:{key}");
        let channel = BroadcastChannel::new(&name).ok()?;
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(message) = GroupMessage::from_js(&event.data()) {
                on_message(message);
            }
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let group = Self {
            name,
            channel,
            _on_message: on_message,
            release: Rc::default(),
        };
        group.post(&GroupMessage::Hello);
        Some(group)
    }

    /// Posts `message` to the other tabs of the group.
    pub fn post(&self, message: &GroupMessage) {
        let _ = self.channel.post_message(&message.to_js());
    }

    /// Queues for leadership (or, with `steal`, takes it from a silent leader now).
    /// `on_lead` runs when this tab becomes the leader; `on_lost` when the lock is taken
    /// away (stolen by another tab) while it leads.
    pub fn request_lead(
        &self,
        steal: bool,
        on_lead: impl FnOnce() -> bool + 'static,
        on_lost: impl FnOnce() + 'static,
    ) {
        let release = self.release.clone();
        let granted = Closure::once_into_js(move |_lock: JsValue| -> js_sys::Promise {
            if !on_lead() {
                // Nobody wants it any more (the tab's connection was closed meanwhile).
                return js_sys::Promise::resolve(&JsValue::UNDEFINED);
            }
            // Held until `release` is called (or the tab goes away).
            js_sys::Promise::new(&mut |resolve, _reject| {
                *release.borrow_mut() = Some(resolve);
            })
        });
        let options = js_sys::Object::new();
        if steal {
            let _ = js_sys::Reflect::set(&options, &"steal".into(), &true.into());
        }
        let Ok(held) = request_lock(&self.name, &options, &granted) else {
            return;
        };
        wasm_bindgen_futures::spawn_local(async move {
            // Rejected when another tab steals the lock; resolved when we release it.
            if wasm_bindgen_futures::JsFuture::from(held).await.is_err() {
                on_lost();
            }
        });
    }

    /// Gives the lock up, if held: the next tab in the queue leads.
    fn release(&self) {
        if let Some(resolve) = self.release.borrow_mut().take() {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    }
}

impl Drop for TabGroup {
    fn drop(&mut self) {
        self.release();
        self.channel.set_onmessage(None);
        self.channel.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection_state::Trouble;
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn messages_survive_the_trip_between_tabs() {
        let messages = [
            GroupMessage::Event {
                event: "message".into(),
                id: "42".into(),
                data: "{\"title\":\"x\"}".into(),
            },
            GroupMessage::State {
                state: ConnectionState::Live,
            },
            GroupMessage::State {
                state: ConnectionState::Offline(Trouble::ServerError(503)),
            },
            GroupMessage::State {
                state: ConnectionState::Offline(Trouble::NotAllowed),
            },
            GroupMessage::Hello,
            GroupMessage::Want {
                tab: "3f".into(),
                topics: vec!["messages".into(), "alerts.*".into()],
            },
            GroupMessage::Want {
                tab: "3f".into(),
                topics: Vec::new(),
            },
        ];
        for message in messages {
            assert_eq!(GroupMessage::from_js(&message.to_js()), Some(message));
        }
        assert_eq!(GroupMessage::from_js(&JsValue::from_str("garbage")), None);
    }
}

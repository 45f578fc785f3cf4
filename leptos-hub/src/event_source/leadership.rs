//! The tab's part in a shared connection ([`crate::tab_group`]): alone, leader (holds the
//! socket and posts what it receives) or follower (receives from the leader, and takes over
//! when the leader goes silent or closes).
//!
//! Every tab posts its topics ([`GroupMessage::Want`]) when it joins, when they change and
//! in answer to each of the leader's beacons, and every tab keeps what it heard: the leader
//! connects for the union of its own and those heard in the last
//! [`tab_group::LEADER_SILENCE`], and a tab that takes over already knows that union. A tab
//! that closes without a word drops out of the union within that time.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use gloo_timers::callback::{Interval, Timeout};
use leptos::prelude::*;

use super::{link, Core, SseMessage};
use crate::tab_group::{self, GroupMessage, TabGroup};

/// How this tab takes part in its connection (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Role {
    #[default]
    Alone,
    Leader,
    Follower,
}

/// What a connection keeps of its group.
pub(super) struct Tabs {
    pub(super) role: Cell<Role>,
    group: RefCell<Option<TabGroup>>,
    /// Whether [`super::Connection::start`] has been called.
    started: Cell<bool>,
    /// Events from the group's leader that came before [`super::Connection::start`].
    early: RefCell<Vec<SseMessage>>,
    /// The leader's sign of life to the group.
    beacon: RefCell<Option<Interval>>,
    /// A follower's countdown to taking over from a silent leader.
    leader_watch: RefCell<Option<Timeout>>,
    /// This tab's name in the group's [`GroupMessage::Want`]s.
    tab: String,
    /// The other tabs' topics, by tab, with when they were last heard (`Date.now()`).
    peers: RefCell<HashMap<String, (Vec<String>, f64)>>,
}

impl Default for Tabs {
    fn default() -> Self {
        Self {
            role: Cell::default(),
            group: RefCell::default(),
            started: Cell::default(),
            early: RefCell::default(),
            beacon: RefCell::default(),
            leader_watch: RefCell::default(),
            tab: format!("{:x}", js_sys::Math::random().to_bits()),
            peers: RefCell::default(),
        }
    }
}

impl Tabs {
    /// Leaves the group and stops beaconing or watching its leader.
    pub(super) fn close(&self) {
        self.beacon.borrow_mut().take();
        self.leader_watch.borrow_mut().take();
        if let Some(group) = self.group.borrow_mut().take() {
            // Out of the union at once, rather than when the leader stops hearing it.
            group.post(&GroupMessage::Want {
                tab: self.tab.clone(),
                topics: Vec::new(),
            });
        }
    }

    /// Tells the group this tab's topics.
    fn want(&self, own: &[String]) {
        if let Some(group) = self.group.borrow().as_ref() {
            group.post(&GroupMessage::Want {
                tab: self.tab.clone(),
                topics: own.to_vec(),
            });
        }
    }

    /// This tab's topics and those the others said in the last
    /// [`tab_group::LEADER_SILENCE`], each once, sorted; forgets the tabs gone quiet.
    fn union(&self, own: &[String]) -> Vec<String> {
        let since = js_sys::Date::now() - tab_group::LEADER_SILENCE.as_millis() as f64;
        let mut peers = self.peers.borrow_mut();
        peers.retain(|_, (topics, heard)| *heard >= since && !topics.is_empty());
        let all = own
            .iter()
            .chain(peers.values().flat_map(|(topics, _)| topics));
        super::sorted(all.cloned().collect())
    }

    /// Posts `message` to the group, if this tab leads one.
    pub(super) fn post(&self, message: &GroupMessage) {
        if self.role.get() == Role::Leader {
            if let Some(group) = self.group.borrow().as_ref() {
                group.post(message);
            }
        }
    }
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

/// Joins the group of tabs that share `key`; the tab follows until it is started and wins
/// the group's lock. Where the browser cannot share, the connection stays alone.
pub(super) fn join(core: &Rc<Core>, key: &str) {
    let weak = Rc::downgrade(core);
    let group = TabGroup::join(key, move |message| {
        if let Some(core) = weak.upgrade() {
            from_group(&core, message);
        }
    });
    if group.is_some() {
        core.tabs.role.set(Role::Follower);
    }
    *core.tabs.group.borrow_mut() = group;
    core.tabs.want(&core.own.borrow());
}

/// This tab's own topics changed: alone, it follows them; a leader follows the new union;
/// a follower tells the leader.
pub(super) fn topics_changed(core: &Rc<Core>) {
    let own = core.own.borrow().clone();
    match core.tabs.role.get() {
        Role::Alone => core.follow(super::sorted(own)),
        Role::Leader => core.follow(core.tabs.union(&own)),
        Role::Follower => core.tabs.want(&own),
    }
}

/// Starts a connection in a group: what the leader sent so far is delivered, then the
/// tab watches the leader and queues for the lead.
pub(super) fn start(core: &Rc<Core>) {
    core.tabs.started.set(true);
    for message in core.tabs.early.take() {
        receive(core, message);
    }
    watch_leader(core);
    request_lead(core, false);
}

/// Hands an event the group's leader received to the owner, and remembers its id: where
/// this tab resumes if it takes over.
fn receive(core: &Rc<Core>, message: SseMessage) {
    if !message.id.is_empty() {
        core.set_last_event_id.set(Some(message.id.clone()));
    }
    (core.on_event)(message);
}

/// What another tab of the group said.
fn from_group(core: &Rc<Core>, message: GroupMessage) {
    match (core.tabs.role.get(), message) {
        (role, GroupMessage::Want { tab, topics }) => {
            let heard = js_sys::Date::now();
            core.tabs.peers.borrow_mut().insert(tab, (topics, heard));
            if role == Role::Leader {
                core.follow(core.tabs.union(&core.own.borrow()));
            }
        }
        (Role::Leader, GroupMessage::Hello) => core.post(&GroupMessage::State {
            state: core.state.get_untracked(),
        }),
        (Role::Follower, GroupMessage::State { state }) => {
            core.set_state.set(state);
            core.tabs.want(&core.own.borrow());
            watch_leader(core);
        }
        (Role::Follower, GroupMessage::Event { event, id, data }) => {
            let message = SseMessage { event, id, data };
            if core.tabs.started.get() {
                receive(core, message);
                watch_leader(core);
            } else {
                core.tabs.early.borrow_mut().push(message);
            }
        }
        _ => {}
    }
}

/// Queues this tab for the group's lock (`steal`: takes it now). Once granted, the tab
/// connects, resuming after the last id the group received, and beacons its state.
fn request_lead(core: &Rc<Core>, steal: bool) {
    let group = core.tabs.group.borrow();
    let Some(group) = group.as_ref() else { return };
    let (on_lead, on_lost) = (Rc::downgrade(core), Rc::downgrade(core));
    group.request_lead(
        steal,
        move || {
            let Some(core) = on_lead.upgrade() else {
                return false;
            };
            core.tabs.role.set(Role::Leader);
            core.tabs.leader_watch.borrow_mut().take();
            *core.topics.borrow_mut() = core.tabs.union(&core.own.borrow());
            let beacon = Rc::downgrade(&core);
            *core.tabs.beacon.borrow_mut() = Some(Interval::new(
                tab_group::BEACON_EVERY.as_millis() as u32,
                move || {
                    if let Some(core) = beacon.upgrade() {
                        core.post(&GroupMessage::State {
                            state: core.state.get_untracked(),
                        });
                        // Drops the topics of tabs gone quiet.
                        core.follow(core.tabs.union(&core.own.borrow()));
                    }
                },
            ));
            link::open(&core);
            true
        },
        move || {
            // Another tab took over (this one was frozen or too slow): follow it.
            let Some(core) = on_lost.upgrade() else {
                return;
            };
            core.tabs.role.set(Role::Follower);
            core.tabs.beacon.borrow_mut().take();
            core.link.close();
            watch_leader(&core);
            request_lead(&core, false);
        },
    );
}

/// (Re)starts a follower's countdown: a leader silent for [`tab_group::LEADER_SILENCE`]
/// is replaced by this tab.
fn watch_leader(core: &Rc<Core>) {
    let weak = Rc::downgrade(core);
    let timer = Timeout::new(tab_group::LEADER_SILENCE.as_millis() as u32, move || {
        if let Some(core) = weak
            .upgrade()
            .filter(|s| s.tabs.role.get() == Role::Follower)
        {
            core.tabs.leader_watch.borrow_mut().take();
            request_lead(&core, true);
        }
    });
    *core.tabs.leader_watch.borrow_mut() = Some(timer);
}

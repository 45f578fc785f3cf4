//! notify-hub's browser app: Leptos, client-side rendered, compiled to wasm.
//!
//! Where things live:
//! - [`event_source`]: the typed wrapper over the browser's `EventSource` (state, events,
//!   reconnects); [`connection_state`]: what its state says to the user.
//! - [`tab_group`]: one connection per browser: the tabs elect a leader that holds it.
//! - [`notification_feed`]: `use_notification_feed(stream)`, a stream's list as signals.
//! - [`api`]: where the server is: its URLs, and the HTTP calls (gloo-net).
//! - [`storage`]: what the app remembers across reloads (`localStorage`).
//! - [`notification_list`]: the notification list as data (order, dedup, unread).
//! - [`desktop`]: opt-in desktop alerts (Notification API).
//! - [`components`]: one module per UI component; [`components::App`] puts them together.

pub mod api;
pub mod components;
pub mod connection_state;
pub mod desktop;
pub mod event_source;
pub mod notification_feed;
pub mod notification_list;
pub mod storage;
pub mod tab_group;

pub use components::App;

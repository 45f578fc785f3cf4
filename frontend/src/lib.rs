//! notify-hub's browser app: Leptos, client-side rendered, compiled to wasm.
//!
//! Where things live:
//! - [`event_source`]: the typed wrapper over the browser's `EventSource` (state, events,
//!   reconnects).
//! - [`tab_group`]: one connection per browser: the tabs elect a leader that holds it.
//! - [`notification_feed`]: `use_notification_feed(stream)`, a stream's list as signals.
//! - [`api`]: where the server is: its URLs, and the HTTP calls (gloo-net).
//! - [`storage`]: what the app remembers across reloads (`localStorage`).
//! - [`feed`]: the notification list as data (order, dedup, unread).
//! - [`desktop`]: opt-in desktop alerts (Notification API).
//! - [`components`]: one module per UI component; [`components::App`] puts them together.

pub mod api;
pub mod components;
pub mod desktop;
pub mod event_source;
pub mod feed;
pub mod notification_feed;
pub mod storage;
pub mod tab_group;

pub use components::App;

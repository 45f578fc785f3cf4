//! notify-hub's client for Leptos apps (client-side rendered, wasm): what a page needs
//! to show a hub's notifications live, and nothing of how it shows them.
//!
//! ```no_run
//! use leptos::prelude::*;
//! use leptos_hub::api::Api;
//! use leptos_hub::connection_state::ConnectionState;
//! use leptos_hub::notification_feed::use_notification_feed;
//!
//! /// A bell: how many notifications of `messages` are unread, live.
//! #[component]
//! fn Bell() -> impl IntoView {
//!     // The hub's address; without it, the page's own origin.
//!     provide_context(Api::new("https://hub.example.com"));
//!     let feed = use_notification_feed("messages".into());
//!     view! {
//!         <span>
//!             {move || feed.feed().with(|list| list.unread())}
//!             {move || (feed.state().get() != ConnectionState::Live).then_some(" (offline)")}
//!         </span>
//!     }
//! }
//!
//! fn main() {
//!     leptos::mount::mount_to_body(Bell);
//! }
//! ```
//!
//! The feed loads the stream's history, then follows it live from where the history
//! ends, resuming after every drop with nothing lost or repeated, and the browser's tabs
//! that show the same stream share one connection.
//!
//! Where things live:
//! - [`notification_feed`]: `use_notification_feed(stream)`, a stream's list, its
//!   connection's state and the server clock as signals.
//! - [`event_source`]: the typed wrapper over the browser's `EventSource` (state, events,
//!   resume, connect timeout, silence watchdog, backoff); [`connection_state`]: what its
//!   state says to the user.
//! - [`tab_group`]: one connection per browser: the tabs elect a leader that holds it.
//! - [`api`]: where the server is: its URLs, and the HTTP calls (gloo-net).
//! - [`storage`]: what the client remembers across reloads (`localStorage`).
//! - [`notification_list`]: the notification list as data (order, dedup, unread).
//! - [`desktop`]: opt-in desktop alerts (Notification API).

pub mod api;
pub mod connection_state;
pub mod desktop;
pub mod event_source;
pub mod notification_feed;
pub mod notification_list;
pub mod storage;
pub mod tab_group;

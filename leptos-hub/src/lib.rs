//! notify-hub's client for Leptos apps (client-side rendered, wasm): what a page needs
//! to show a hub's notifications live, and nothing of how it shows them.
//!
//! ```no_run
//! use leptos::prelude::*;
//! use leptos_hub::api::Api;
//! use leptos_hub::connection_state::ConnectionState;
//! use leptos_hub::notification_feed::use_notification_feed;
//!
//! /// A bell: how many notifications of `messages` and every `alerts.` stream are unread, live.
//! #[component]
//! fn Bell() -> impl IntoView {
//!     // The hub's address; without it, the page's own origin.
//!     provide_context(Api::new("https://hub.example.com"));
//!     let feed = use_notification_feed(vec!["messages".to_owned(), "alerts.*".to_owned()]);
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
//! The feed loads the history of its streams, then follows them live from where the
//! history ends, resuming after every drop with nothing lost or repeated; the set may be a
//! signal that changes. The browser's tabs share one connection to the hub, for the union
//! of the streams they show.
//!
//! Where things live:
//! - [`notification_feed`]: `use_notification_feed(streams)`, the list of a set of streams, its
//!   connection's state and the server clock as signals.
//! - [`event_source`]: the typed wrapper over the browser's `EventSource` (state, events,
//!   resume, connect timeout, silence watchdog, backoff); [`connection_state`]: what its
//!   state says to the user.
//! - [`tab_group`]: one connection per browser: the tabs elect a leader that holds it,
//!   for the union of their streams.
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

//! notify-hub's browser app: Leptos, client-side rendered, compiled to wasm.
//!
//! The app is its UI: [`components`], one module per component, put together by
//! [`components::App`], and the set of streams it follows, [`followed`]. Everything under it (the connection, the tab group, a stream's
//! notifications as signals, the server's API) comes from the `leptos-hub` crate, as
//! it would for any other Leptos app.

pub mod components;
pub mod followed;

pub use components::App;

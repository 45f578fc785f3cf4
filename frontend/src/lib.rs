//! notify-hub's browser app: Leptos, client-side rendered, compiled to wasm.
//!
//! Where things live:
//! - [`sse`]: the typed wrapper over the browser's `EventSource` (state, events, reconnects).
//! - [`api`]: where the server is and how its URLs are built.
//! - [`components`]: one module per UI component; [`components::App`] puts them together.

pub mod api;
pub mod components;
pub mod sse;

pub use components::App;

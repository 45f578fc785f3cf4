//! notify-hub: a real-time notification hub over Server-Sent Events.
//!
//! One binary serves the browser app, the SSE streams and the publish API on one port.
//! Where things live:
//! - [`routes`]: every route and middleware, built in one place by [`routes::app`].
//! - [`sse`]: how responses are encoded as `text/event-stream`.
//! - [`clock`] and [`time`]: the shared server clock and its `/sse/time` endpoint.
//! - [`assets`]: the built web app (static files).
//! - [`serve`]: binding, graceful shutdown.
//! - [`cli`]: the command line (`serve`, `publish`, `listen`).

pub mod assets;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod routes;
pub mod serve;
pub mod sse;
pub mod state;
pub mod time;

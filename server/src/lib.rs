//! notify-hub: a real-time notification hub over Server-Sent Events.
//!
//! One binary serves the browser app, the SSE streams and the publish API on one port.
//! Where things live:
//! - [`routes`]: every route and middleware, built in one place by [`routes::app`].
//! - [`sse`]: how responses are encoded as `text/event-stream`.
//! - [`clock`] and [`time`]: the shared server clock and its `/sse/time` endpoint.
//! - [`hub`]: where notification streams fan out (publish, subscribe, replay).
//! - [`store`]: where notifications are kept (SQLite by default).
//! - [`notifications`]: the `/events`, `/api/notifications` and `/trigger` handlers.
//! - [`demo`]: the seed's counter publisher (`serve --demo`).
//! - [`assets`]: the built web app (static files).
//! - [`params`]: query parameters read the same way by every handler.
//! - [`serve`]: binding, graceful shutdown.
//! - [`cli`]: the command line (`serve`, `publish`, `listen`); [`client`]: the last two.

pub mod assets;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod demo;
pub mod error;
pub mod hub;
pub mod notifications;
pub mod params;
pub mod routes;
pub mod serve;
pub mod sse;
pub mod state;
pub mod store;
pub mod time;

//! notify-hub: a real-time notification hub over Server-Sent Events.
//!
//! One binary serves the browser app, the SSE streams and the publish API on one port.
//! Where things live:
//! - [`routes`]: every route and the middleware around them, built in one place by
//!   [`routes::app`]; [`middleware`]: those layers, each thin over the part that decides.
//! - [`handlers`]: one module per endpoint family (parse, call, answer).
//! - [`sse`]: how responses are encoded as `text/event-stream`.
//! - [`hub`]: where notification streams fan out (publish, subscribe, replay → live).
//! - [`store`]: where notifications are kept (SQLite by default).
//! - [`ticker`]: the shared server clock behind `/sse/time`.
//! - [`demo`]: the seed's counter publisher (`serve --demo`).
//! - [`assets`]: the built web app (static files).
//! - [`config`]: every setting and its default; [`state`]: what handlers share.
//! - [`params`], [`error`], [`timestamp`]: query parameters, error answers, time format.
//! - [`limits`], [`auth`], [`metrics`]: request limits, tokens, what is measured.
//! - [`serve`]: binding, the accept loop, graceful shutdown; [`idle_watch`]: the deadline
//!   for a connection's next request, in every protocol; [`tls`]: HTTPS (HTTP/2 and
//!   HTTP/1.1) and certificate renewal; [`http1_stream`]: event streams over plain
//!   HTTP/1.1 written straight to the socket, a few KiB per idle subscriber.
//! - [`cli`]: the command line (`serve`, `publish`, `listen`); [`hub_client`]: the last two.

pub mod assets;
pub mod auth;
pub mod cli;
pub mod config;
pub mod demo;
pub mod error;
pub mod fuzz_checks;
pub mod handlers;
pub mod http1_stream;
pub mod hub;
pub mod hub_client;
pub mod idle_watch;
pub mod limits;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod page_policy;
pub mod params;
pub mod routes;
pub mod serve;
pub mod sse;
pub mod state;
pub mod store;
pub mod ticker;
pub mod timestamp;
pub mod tls;

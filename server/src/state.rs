//! State shared by all handlers.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::hub::Hub;
use crate::ticker::Tickers;

/// What every handler can reach. Cheap to clone: handlers get a copy per request.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    /// The clock tickers behind `/sse/time`.
    pub tickers: Tickers,
    /// Notification streams: publish, subscribe, history.
    pub hub: Arc<Hub>,
    /// Cancelled when the server shuts down; every open stream ends on it.
    pub shutdown: CancellationToken,
}

impl AppState {
    pub fn new(config: Config, hub: Arc<Hub>, shutdown: CancellationToken) -> Self {
        Self {
            config: Arc::new(config),
            tickers: Tickers::default(),
            hub,
            shutdown,
        }
    }
}

//! State shared by all handlers.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;

/// Cheap to clone: handlers get a copy per request.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub clock: Clock,
    /// Cancelled when the server shuts down; every open stream ends on it.
    pub shutdown: CancellationToken,
}

impl AppState {
    pub fn new(config: Config, shutdown: CancellationToken) -> Self {
        Self {
            config: Arc::new(config),
            clock: Clock::default(),
            shutdown,
        }
    }
}

//! State shared by all handlers.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::hub::Hub;

/// Cheap to clone: handlers get a copy per request.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub clock: Clock,
    pub hub: Arc<Hub>,
    /// Cancelled when the server shuts down; every open stream ends on it.
    pub shutdown: CancellationToken,
}

impl AppState {
    pub fn new(config: Config, hub: Arc<Hub>, shutdown: CancellationToken) -> Self {
        Self {
            config: Arc::new(config),
            clock: Clock::default(),
            hub,
            shutdown,
        }
    }
}

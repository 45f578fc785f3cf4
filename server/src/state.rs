//! State shared by all handlers.

use std::ops::Deref;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::config::Config;
use crate::hub::Hub;
use crate::limits::{PublishRate, StreamSlots};
use crate::ticker::Tickers;

/// What every handler can reach. Cloned several times per request (by each layer and
/// extractor that takes state), so a clone is one reference count: cloning the fields
/// one by one (seven reference counts and the shutdown token's lock) showed up in the
/// profile of the publish benchmark.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The state itself; reached through [`AppState`].
pub struct Shared {
    pub config: Config,
    /// The clock tickers behind `/sse/time`.
    pub tickers: Tickers,
    /// Notification streams: publish, subscribe, history.
    pub hub: Arc<Hub>,
    /// Cancelled when the server shuts down; every open stream ends on it.
    pub shutdown: CancellationToken,
    /// The open streams against their maxima.
    pub stream_slots: Arc<StreamSlots>,
    /// Each client's publish rate.
    pub publish_rate: PublishRate,
    /// Who may publish and read what.
    pub auth: Auth,
}

impl AppState {
    /// Fails on an auth setting that cannot work (an unreadable key, a short secret).
    pub fn new(config: Config, hub: Arc<Hub>, shutdown: CancellationToken) -> anyhow::Result<Self> {
        crate::metrics::install();
        let auth = Auth::new(
            config.jwt_secret.as_deref(),
            config.jwt_public_key.as_deref(),
            config.private_streams.clone(),
            config.jwt_audience.clone(),
            config.tls.is_some(),
        )?;
        Ok(Self(Arc::new(Shared {
            auth,
            stream_slots: StreamSlots::new(config.max_connections, config.max_connections_per_ip),
            publish_rate: PublishRate::new(config.publish_rate, config.publish_burst),
            config,
            tickers: Tickers::default(),
            hub,
            shutdown,
        })))
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

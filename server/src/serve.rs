//! Running a server: binding, serving, and graceful shutdown within a bounded time.

use std::future::{Future, IntoFuture};
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::hub::Hub;
use crate::routes::app;
use crate::state::AppState;
use crate::store::sqlite::SqliteStore;
use crate::{assets, demo};

/// Binds `config.addr` and serves until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.addr))?;
    serve(listener, config, shutdown_signal()).await
}

/// Serves on `listener` until `signal` completes.
///
/// On the signal it stops accepting connections and ends every open stream, so browsers
/// reconnect elsewhere; streams still open after `config.shutdown_grace` are cut off.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    signal: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    if !assets::is_built(&config.assets) {
        tracing::warn!(
            "no web app in {}: build it with `{}`; serving the API only",
            config.assets.display(),
            assets::BUILD_COMMAND
        );
    }
    let store = Arc::new(SqliteStore::open(&config.db)?);
    tracing::info!("notifications stored in {}", config.db.display());
    let hub = Hub::new(store, config.heartbeat, config.subscriber_buffer);
    let shutdown = CancellationToken::new();
    let mut retention = config.retention.clone();
    if config.demo {
        retention = demo::with_counter_cap(retention);
        tokio::spawn(demo::run(hub.clone(), shutdown.clone()));
    }
    {
        let (hub, every, shutdown) = (hub.clone(), config.prune_every, shutdown.clone());
        tokio::spawn(async move { hub.apply_retention(retention, every, shutdown).await });
    }
    let grace = config.shutdown_grace;
    let state = AppState::new(config, hub, shutdown.clone());
    tracing::info!("listening on http://{addr}");

    let trigger = shutdown.clone();
    let server = axum::serve(listener, app(state))
        .with_graceful_shutdown(async move {
            signal.await;
            tracing::info!("shutting down: closing streams");
            trigger.cancel();
        })
        .into_future();
    tokio::select! {
        result = server => result.context("server failed")?,
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("connections still open after {grace:?}; exiting anyway");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

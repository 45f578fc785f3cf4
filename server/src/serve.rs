//! Running a server: binding, the accept loop (plain HTTP, or HTTPS with HTTP/2 and
//! HTTP/1.1 through `tls.rs`), and graceful shutdown within a bounded time.
//!
//! The accept loop is hyper's own (hyper-util), not `axum::serve`, for the limits a server
//! on a network needs before a request reaches the router: a client must send its request
//! headers within `header_timeout` (a connection that never sends or never finishes them,
//! the slowloris attack, is closed), and hyper buffers at most [`MAX_HEAD_BUFFER`] bytes
//! of request head. A connection whose writes make no progress for `send_timeout` (a
//! client that vanished, a half-open link, a reader that stopped reading) is closed and its
//! streams freed: the kernel ends it when sent data goes unacknowledged that long
//! (`TCP_USER_TIMEOUT`), and a deadline on every write ends it when the peer acknowledges
//! but never reads, or a proxy between holds the connection open.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_io_timeout::TimeoutStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::Config;
use crate::http1_stream::{self, StreamRequest};
use crate::hub::Hub;
use crate::routes::app;
use crate::state::AppState;
use crate::store::redis_connection;
use crate::store::redis_streams::RedisStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Retention, Store};
use crate::tls::Tls;
use crate::{assets, demo};

/// Connections the kernel may complete and queue before the server accepts them: as many
/// as it allows (`net.core.somaxconn`, 4096 by default). `TcpListener::bind` asks for 128:
/// in a burst larger than that while the server is busy (browsers reconnecting after a
/// restart), the handshakes past it were dropped and retried by the clients a second or
/// more later. Measured (the test `a_burst_of_connections_to_a_stopped_server_…`): 500
/// connections to a stopped server, 129 completed with 128, all 500 with this.
const LISTEN_BACKLOG: u32 = 65_535;

/// Binds `config.addr` and serves until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listener =
        listen(config.addr).with_context(|| format!("cannot listen on {}", config.addr))?;
    serve(listener, config, shutdown_signal()).await
}

/// A listener on `addr` with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as `bind` sets it).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
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
    let grace = config.shutdown_grace;
    let timeouts = Timeouts {
        header: config.header_timeout,
        send: config.send_timeout,
    };
    let tls = config.tls.clone().map(Tls::start).transpose()?;
    let state = start(config, addr).await?;
    let shutdown = state.shutdown.clone();
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!("listening on {scheme}://{addr}");
    let connections = accept_until(listener, app(state), tls, timeouts, &shutdown, signal).await;
    tracing::info!("shutting down: closing streams");
    shutdown.cancel();
    tokio::select! {
        () = connections.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!("connections still open after {grace:?}; exiting anyway");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Everything the routes need, with the server's background tasks running: the store and
/// the hub over it, retention, the demo counter (`--demo`), and the publish limiter's
/// upkeep. Warns about a setting that works but is likely a mistake.
async fn start(config: Config, addr: SocketAddr) -> anyhow::Result<AppState> {
    if !assets::is_built(&config.assets) {
        tracing::warn!(
            "no web app in {}: build it with `{}`; serving the API only",
            config.assets.display(),
            assets::BUILD_COMMAND
        );
    }
    let mut retention = config.retention.clone();
    if config.demo {
        retention = demo::with_counter_cap(retention);
    }
    let store = open_store(&config, &retention).await?;
    let hub = Hub::new(store, config.heartbeat, config.subscriber_buffer);
    let shutdown = CancellationToken::new();
    if config.demo {
        tokio::spawn(demo::run(hub.clone(), shutdown.clone()));
    }
    {
        let (hub, every, shutdown) = (hub.clone(), config.prune_every, shutdown.clone());
        tokio::spawn(async move { hub.apply_retention(retention, every, shutdown).await });
    }
    let state = AppState::new(config, hub, shutdown)?;
    if !state.auth.enabled() && !addr.ip().is_loopback() {
        tracing::warn!(
            "listening on {addr}, beyond this machine, without auth: anyone who can reach it \
             may publish to and read every stream (see --jwt-secret)"
        );
    }
    tokio::spawn(forget_idle_publishers(state.clone()));
    Ok(state)
}

/// The limits in time on every connection; see the module documentation.
#[derive(Clone, Copy)]
struct Timeouts {
    header: Duration,
    send: Duration,
}

/// Accepts connections and serves each with `router` (through `tls` when given) until
/// `signal`; returns the open ones, to be drained.
async fn accept_until(
    listener: TcpListener,
    router: Router,
    tls: Option<Tls>,
    timeouts: Timeouts,
    shutdown: &CancellationToken,
    signal: impl Future<Output = ()>,
) -> GracefulShutdown {
    let header_timeout = timeouts.header;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BUFFER as u32);
    let connections = GracefulShutdown::new();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let connection = Connection {
                        peer,
                        router: router.clone(),
                        builder: builder.clone(),
                        tls: tls.clone(),
                        timeouts,
                        shutdown: shutdown.clone(),
                    };
                    tokio::spawn(connection.serve(socket, connections.watcher()));
                }
                // Out of file descriptors, say: wait for some to be freed rather than spin.
                Err(err) => {
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            () = &mut signal => break,
        }
    }
    connections
}

/// One accepted connection and what serving it takes.
struct Connection {
    peer: SocketAddr,
    router: Router,
    builder: auto::Builder<TokioExecutor>,
    tls: Option<Tls>,
    timeouts: Timeouts,
    /// Cancelled when the server shuts down.
    shutdown: CancellationToken,
}

impl Connection {
    /// Serves `socket` until it closes: its first request by [`http1_stream`] when that
    /// is an event stream over plain HTTP/1.1, everything else by hyper. `watcher` lets
    /// the graceful shutdown wait for it.
    async fn serve(self, socket: TcpStream, watcher: Watcher) {
        let Self {
            peer,
            router,
            builder,
            tls,
            timeouts,
            shutdown,
        } = self;
        // Events are small writes that must leave at once: with Nagle's algorithm each
        // waited for the client's delayed ACK (the fan-out benchmark's p99 went from
        // 0.8-1.6 s to 0.1 s without it). hyper and `http1_stream` already write the
        // frames that are ready together.
        let _ = socket.set_nodelay(true);
        let _ = socket2::SockRef::from(&socket).set_tcp_user_timeout(Some(timeouts.send));
        if !sends_first_byte(&socket, timeouts.header).await {
            tracing::debug!("{peer} sent nothing in {:?}; closed", timeouts.header);
            return;
        }
        let first = match tls {
            None => http1_stream::peek_first_request(&socket).await,
            Some(_) => Ok(None),
        };
        let mut socket = TimeoutStream::new(socket);
        socket.set_write_timeout(Some(timeouts.send));
        let mut socket = Box::pin(socket);
        if let Ok(Some(StreamRequest { request, head_len })) = first {
            let Ok(response) = connection_service(router.clone(), peer)(request).await;
            if let Err(err) = http1_stream::respond(&mut socket, head_len, response).await {
                tracing::debug!("stream to {peer} ended: {err}");
                return;
            }
            // hyper starts afresh: an idle connection must bring its next request in time,
            // and none is taken once the server shuts down (which ended the stream).
            tokio::select! {
                sent = sends_first_byte(socket.get_ref(), timeouts.header) => if !sent {
                    tracing::debug!("{peer} sent nothing more in {:?}; closed", timeouts.header);
                    return;
                },
                () = shutdown.cancelled() => return,
            }
        }
        let socket = match tls {
            None => Either::Left(socket),
            Some(tls) => {
                let handshake = tls.acceptor().accept(socket);
                match tokio::time::timeout(timeouts.header, handshake).await {
                    Ok(Ok(socket)) => Either::Right(socket),
                    Ok(Err(err)) => {
                        tracing::debug!("TLS handshake with {peer} failed: {err}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(
                            "{peer} did not finish its TLS handshake in {:?}; closed",
                            timeouts.header
                        );
                        return;
                    }
                }
            }
        };
        let service = hyper::service::service_fn(connection_service(router, peer));
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(socket), service);
        // Boxed: hyper's connection state is kilobytes, and inline it would size every
        // connection's task, also those that stream through `http1_stream`.
        if let Err(err) = Box::pin(watcher.watch(connection.into_owned())).await {
            tracing::debug!("connection from {peer} ended: {err}");
        }
    }
}

/// Whether `socket` brings its first byte within `header_timeout`. hyper's header timeout
/// starts with the first byte: a client that never sends one (or hangs up first) is
/// dropped on `false`.
async fn sends_first_byte(socket: &TcpStream, header_timeout: Duration) -> bool {
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout(header_timeout, socket.peek(&mut first)).await,
        Ok(Ok(1))
    )
}

/// The store `config` names: Redis Streams with `--redis`, else the SQLite file.
async fn open_store(config: &Config, retention: &Retention) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = &config.redis {
        let store = RedisStore::connect(url, &config.redis_prefix, retention.clone()).await?;
        tracing::info!(
            "notifications stored in Redis at {} under {}:*",
            redis_connection::redacted(url),
            config.redis_prefix
        );
        return Ok(Arc::new(store));
    }
    let store = SqliteStore::open(&config.db)?;
    if let Some(max) = config.max_db_bytes {
        store.limit_size(max)?;
    }
    tracing::info!("notifications stored in {}", config.db.display());
    Ok(Arc::new(store))
}

/// Most bytes of request head hyper buffers; the router's own limits
/// ([`crate::limits`]) are smaller and answer in JSON.
const MAX_HEAD_BUFFER: usize = 64 * 1024;

/// Every minute until shutdown, drops the publish-rate entries of clients that have been
/// quiet long enough to be back at their full burst.
async fn forget_idle_publishers(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = every.tick() => state.publish_rate.forget_idle(),
            () = state.shutdown.cancelled() => return,
        }
    }
}

/// Pause after a failed `accept` (e.g. no file descriptor left).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The router as one connection's service, for hyper's requests and for those of
/// [`http1_stream`]: each request carries the peer's address.
fn connection_service<B>(
    router: Router,
    peer: SocketAddr,
) -> impl Fn(hyper::Request<B>) -> tower::util::Oneshot<Router, hyper::Request<B>> + Clone
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    move |mut request| {
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(request)
    }
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

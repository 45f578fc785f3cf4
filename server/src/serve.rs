//! Running a server: binding, the accept loop (plain HTTP, or HTTPS with HTTP/2 and
//! HTTP/1.1 through `tls.rs`), and graceful shutdown within a bounded time.
//!
//! The accept loop is hyper's own (hyper-util), not `axum::serve`, for the limits a server
//! on a network needs before a request reaches the router:
//! - **Open connections are capped** ([`crate::limits::ConnectionCap`], by default from the
//!   process's open-file limit): one past the cap is closed at accept, before any byte is
//!   read or any task spawned.
//! - **Every connection brings its first request within `header_timeout`** of its accept,
//!   whatever it speaks (its first byte, a TLS handshake, HTTP/1 headers, the HTTP/2
//!   preface and SETTINGS), and **the next within `header_timeout` of the last one's end**:
//!   a connection that never does (the slowloris attack, a lone `P`, an HTTP/2 preface and
//!   silence) is closed ([`crate::idle_watch`]). hyper buffers at most
//!   [`MAX_HEAD_BUFFER`] bytes of request head.
//! - **A connection that stops answering is closed.** Its writes must make progress within
//!   `send_timeout` (a client that vanished, a half-open link, a reader that stopped
//!   reading): the kernel ends it when sent data goes unacknowledged that long
//!   (`TCP_USER_TIMEOUT`), and a deadline on every write ends it when the peer acknowledges
//!   but never reads, or a proxy between holds the connection open. HTTP/2 connections with
//!   streams open are also pinged every `keep_alive` and closed when a ping goes
//!   unanswered for `send_timeout`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_io_timeout::TimeoutStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::Config;
use crate::http1_stream::{self, StreamRequest};
use crate::hub::Hub;
use crate::idle_watch::{Begin, IdleWatch};
use crate::limits::ConnectionCap;
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
        keep_alive: config.keep_alive,
    };
    let cap = ConnectionCap::new(config.max_open_connections.resolve());
    let tls = config.tls.clone().map(Tls::start).transpose()?;
    let state = start(config, addr).await?;
    let shutdown = state.shutdown.clone();
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!("open connections: at most {}", cap.describe());
    tracing::info!("listening on {scheme}://{addr}");
    let connections =
        accept_until(listener, app(state), tls, timeouts, cap, &shutdown, signal).await;
    tracing::info!("shutting down: closing streams");
    shutdown.cancel();
    connections.close();
    tokio::select! {
        () = connections.wait() => {}
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
    /// Between HTTP/2 pings while streams are open.
    keep_alive: Duration,
}

/// Accepts connections and serves each with `router` (through `tls` when given) until
/// `signal`; returns the open ones, to be drained.
async fn accept_until(
    listener: TcpListener,
    router: Router,
    tls: Option<Tls>,
    timeouts: Timeouts,
    cap: ConnectionCap,
    shutdown: &CancellationToken,
    signal: impl Future<Output = ()>,
) -> TaskTracker {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header)
        .max_buf_size(MAX_HEAD_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BUFFER as u32)
        .keep_alive_interval(Some(timeouts.keep_alive))
        .keep_alive_timeout(timeouts.send);
    let connections = TaskTracker::new();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    // Past the cap: closed here, before a task or a byte of buffer.
                    let Some(open) = cap.admit() else {
                        drop(socket);
                        continue;
                    };
                    let connection = Connection {
                        peer,
                        router: router.clone(),
                        builder: builder.clone(),
                        tls: tls.clone(),
                        timeouts,
                        shutdown: shutdown.clone(),
                        first_request_by: Instant::now() + timeouts.header,
                    };
                    connections.spawn(async move {
                        connection.serve(socket).await;
                        drop(open);
                    });
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
    /// When the connection must have brought its first request (its accept and the
    /// header timeout).
    first_request_by: Instant,
}

impl Connection {
    /// Serves `socket` until it closes: its first request by [`http1_stream`] when that
    /// is an event stream over plain HTTP/1.1, everything else by hyper.
    async fn serve(self, socket: TcpStream) {
        let Self {
            peer,
            router,
            builder,
            tls,
            timeouts,
            shutdown,
            mut first_request_by,
        } = self;
        // Events are small writes that must leave at once: with Nagle's algorithm each
        // waited for the client's delayed ACK (the fan-out benchmark's p99 went from
        // 0.8-1.6 s to 0.1 s without it). hyper and `http1_stream` already write the
        // frames that are ready together.
        let _ = socket.set_nodelay(true);
        let _ = socket2::SockRef::from(&socket).set_tcp_user_timeout(Some(timeouts.send));
        if !sends_first_byte(&socket, first_request_by).await {
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
            let Ok(response) = connection_service(router.clone(), peer, None)(request).await;
            if let Err(err) = http1_stream::respond(&mut socket, head_len, response).await {
                tracing::debug!("stream to {peer} ended: {err}");
                return;
            }
            // hyper starts afresh: an idle connection must bring its next request in time,
            // and none is taken once the server shuts down (which ended the stream).
            first_request_by = Instant::now() + timeouts.header;
            tokio::select! {
                sent = sends_first_byte(socket.get_ref(), first_request_by) => if !sent {
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
                match tokio::time::timeout_at(first_request_by, handshake).await {
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
        let mut idle = IdleWatch::new();
        let service =
            hyper::service::service_fn(connection_service(router, peer, Some(idle.begin())));
        // Boxed: hyper's connection state is kilobytes, and inline it would size every
        // connection's task, also those that stream through `http1_stream`.
        let mut connection =
            Box::pin(builder.serve_connection_with_upgrades(TokioIo::new(socket), service));
        let mut closing = false;
        loop {
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(err) = ended {
                        tracing::debug!("connection from {peer} ended: {err}");
                    }
                    return;
                }
                () = shutdown.cancelled(), if !closing => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = idle.idle_past(first_request_by, timeouts.header) => {
                    // A connection that never brought a request has nothing to wind down.
                    // Else hyper closes an idle HTTP/1 connection on this, and an HTTP/2
                    // one once its GOAWAY is out; it is dropped if still there (and idle)
                    // a moment later.
                    if !idle.served_any() || (closing && !idle.busy()) {
                        tracing::debug!("{peer} brought no request in {:?}; closed", timeouts.header);
                        return;
                    }
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                    first_request_by = Instant::now() + IDLE_CLOSE_GRACE;
                }
            }
        }
    }
}

/// How long a connection shut down for idling may take to close by itself.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Whether `socket` brings its first byte by `deadline`. hyper's header timeout starts
/// with the first byte: a client that never sends one (or hangs up first) is dropped on
/// `false`.
async fn sends_first_byte(socket: &TcpStream, deadline: Instant) -> bool {
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout_at(deadline, socket.peek(&mut first)).await,
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
/// [`http1_stream`]: each request carries the peer's address, and with `in_flight` is
/// counted as in flight until its response body is dropped.
fn connection_service<B>(
    router: Router,
    peer: SocketAddr,
    in_flight: Option<Begin>,
) -> impl Fn(
    hyper::Request<B>,
) -> futures::future::BoxFuture<'static, Result<axum::response::Response, Infallible>>
       + Clone
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    move |mut request| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let request_in_flight = in_flight.as_ref().map(Begin::request);
        let response = router.clone().oneshot(request);
        Box::pin(async move {
            let Ok(response) = response.await;
            Ok(match request_in_flight {
                Some(held) => held.until_sent(response),
                None => response,
            })
        })
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

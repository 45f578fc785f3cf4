//! The physical-limit baseline: a minimal tokio server that formats each event once and
//! writes the same bytes to every subscribed socket. No framework, no chunked encoding, no
//! storage, no per-subscriber state beyond a channel receiver, the socket and a buffer
//! that gathers the frames waiting for it into one write.
//!
//! It answers the same paths as our server for the workloads that have a baseline:
//! `GET /sse/time?interval_ms=T` (a shared ticker per interval), `GET /events` (with
//! `?clock_ms=T`, the ticker on the same connection) and `POST /publish` (broadcast as the
//! event our server sends for it: see [`notification_frame`]). For workload J's shape, a
//! subscriber of one stream named `user.…` is kept in a map from user to connections, and
//! a publish to such a stream goes to those connections alone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{Draft, NewNotification};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{broadcast, mpsc};

const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n";

/// Channels by name: one per clock interval, and `events` for published notifications;
/// and the id of the last notification published.
#[derive(Clone, Default)]
struct Channels {
    by_name: Arc<Mutex<HashMap<String, broadcast::Sender<Bytes>>>>,
    /// Workload J: each user's connections.
    users: Arc<Mutex<HashMap<String, Vec<mpsc::Sender<Bytes>>>>>,
    last_id: Arc<AtomicU64>,
}

impl Channels {
    fn subscribe(&self, name: &str, ticker: Option<Duration>) -> broadcast::Receiver<Bytes> {
        let mut channels = self.by_name.lock().unwrap();
        if let Some(tx) = channels.get(name) {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(1024);
        if let Some(every) = ticker {
            tokio::spawn(tick(tx.clone(), every));
        }
        channels.insert(name.to_owned(), tx);
        rx
    }

    /// The ticker every `interval_ms`.
    fn ticks(&self, interval_ms: u64) -> broadcast::Receiver<Bytes> {
        let every = Duration::from_millis(interval_ms);
        self.subscribe(&format!("time-{interval_ms}"), Some(every))
    }

    /// A connection of `user`'s, with a queue of a few frames.
    fn follow_user(&self, user: &str) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(16);
        let mut users = self.users.lock().unwrap();
        let connections = users.entry(user.to_owned()).or_default();
        connections.retain(|tx| !tx.is_closed());
        connections.push(tx);
        rx
    }

    /// Sends `frame` to `user`'s connections; false when it is not a user's stream.
    fn send_to_user(&self, user: &str, frame: &Bytes) -> bool {
        if !user.starts_with("user.") {
            return false;
        }
        if let Some(connections) = self.users.lock().unwrap().get(user) {
            for tx in connections {
                let _ = tx.try_send(frame.clone());
            }
        }
        true
    }

    fn send(&self, name: &str, frame: Bytes) {
        if let Some(tx) = self.by_name.lock().unwrap().get(name) {
            let _ = tx.send(frame);
        }
    }
}

/// Serves until the process is killed; prints where it listens.
pub async fn serve() -> anyhow::Result<()> {
    // The kernel's largest accept queue, as ours has: `bind`'s 128 overflows when
    // thousands connect at once.
    let socket = TcpSocket::new_v4()?;
    socket.bind(([127, 0, 0, 1], 0).into())?;
    let listener = socket.listen(65_535)?;
    println!("listening on http://{}", listener.local_addr()?);
    let channels = Channels::default();
    loop {
        let (socket, _) = listener.accept().await?;
        // Like our server: a frame leaves at once, not after the client's delayed ACK.
        socket.set_nodelay(true)?;
        tokio::spawn(connection(socket, channels.clone()));
    }
}

/// Formats the time once per tick and hands the same bytes to every subscriber.
async fn tick(tx: broadcast::Sender<Bytes>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    for id in 1u64.. {
        interval.tick().await;
        let frame = format!("event: time\nid: {id}\ndata: {}\n\n", now());
        let _ = tx.send(Bytes::from(frame));
    }
}

async fn connection(mut socket: TcpStream, channels: Channels) -> anyhow::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if socket.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let interval_ms = |name: &str| -> Option<u64> {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
    };
    let (mut rx, mut clock) = if head.starts_with("POST /publish") {
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        let mut body = buf[head_end..].to_vec();
        while body.len() < length {
            if socket.read_buf(&mut body).await? == 0 {
                return Ok(());
            }
        }
        let Some((stream, frame)) = notification_frame(&channels.last_id, &body[..length]) else {
            socket
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await?;
            return Ok(());
        };
        if !channels.send_to_user(&stream, &frame) {
            channels.send("events", frame);
        }
        socket
            .write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n")
            .await?;
        return Ok(());
    } else if path == "/sse/time" {
        (
            channels.ticks(interval_ms("interval_ms").unwrap_or(1000)),
            None,
        )
    } else if let Some(user) = (path == "/events")
        .then(|| query.strip_prefix("stream="))
        .flatten()
        .filter(|user| user.starts_with("user.") && !user.contains('&'))
    {
        let rx = channels.follow_user(user);
        drop(buf);
        return user_connection(socket, rx).await;
    } else if path == "/events" {
        let clock = interval_ms("clock_ms").map(|ms| channels.ticks(ms));
        (channels.subscribe("events", None), clock)
    } else {
        socket
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    drop(buf);
    socket.write_all(HEAD).await?;
    let mut ready = Vec::new();
    loop {
        let next = match clock.as_mut() {
            None => rx.recv().await,
            Some(clock) => tokio::select! {
                frame = rx.recv() => frame,
                frame = clock.recv() => frame,
            },
        };
        match next {
            Ok(frame) => ready.extend_from_slice(&frame),
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        }
        // Every frame already waiting goes out in the same write: with TCP_NODELAY, a
        // write per frame would be a segment per frame.
        for rx in std::iter::once(&mut rx).chain(clock.as_mut()) {
            while let Ok(frame) = rx.try_recv() {
                ready.extend_from_slice(&frame);
            }
        }
        socket.write_all(&ready).await?;
        ready.clear();
    }
}

/// A connection of one user's (workload J): the frames sent to it, as they come.
async fn user_connection(
    mut socket: TcpStream,
    mut rx: mpsc::Receiver<Bytes>,
) -> anyhow::Result<()> {
    socket.write_all(HEAD).await?;
    while let Some(frame) = rx.recv().await {
        socket.write_all(&frame).await?;
    }
    Ok(())
}

/// The stream of the publish `body`, and the event a subscriber of ours gets for it: the notification as stored
/// (checked and with the defaults filled in as ours does, the next id, the time of
/// publishing) as `data`, with its `id:`.
/// The baseline sends the same bytes as ours so that the ratio measures the serving, not
/// the payload: an echo of the body was a third of the bytes (45 B against 135 B in
/// workload B), and the load generator's share of the two cores differed with it.
fn notification_frame(last_id: &AtomicU64, body: &[u8]) -> Option<(String, Bytes)> {
    let new: NewNotification = serde_json::from_slice(body).ok()?;
    let draft = Draft::try_from(new).ok()?;
    let stream = draft.stream.clone();
    let id = (last_id.fetch_add(1, Ordering::Relaxed) + 1).to_string();
    let data = serde_json::to_string(&draft.stored(id.clone(), now())).ok()?;
    Some((stream, Bytes::from(format!("id: {id}\ndata: {data}\n\n"))))
}

/// The time now as our server stamps ticks and notifications: RFC 3339, UTC, nanoseconds.
fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

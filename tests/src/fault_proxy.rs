//! A TCP proxy that puts faults on the link between two parts (a client and the server, an
//! instance and Redis), switchable while a test runs, in the manner of toxiproxy's toxics.
//!
//! This machine's kernel has no `netem` qdisc, so latency, slowness and cuts are made here,
//! in user space. Every fault keeps TCP's promise (bytes arrive in order or the connection
//! ends), as a real network does under TCP:
//!
//! - **latency** and **jitter**: each piece of data is held for `latency ± jitter`, in order.
//! - **bandwidth**: at most so many bytes a second in each direction.
//! - **split**: data is passed on in pieces of 1 to `split` bytes, cut at random (`1`: one
//!   byte at a time), as any proxy or a lossy link may cut it.
//! - **blackhole**: nothing passes either way, on open connections and on new ones, until
//!   it is lifted; what was sent meanwhile then arrives, as TCP's retransmissions would
//!   bring it after an outage. Ends of connections wait too.
//! - **half-open** ([`FaultProxy::freeze_open`]): the connections open now pass nothing ever
//!   again, in either direction, and their ends never reach the other side, as when a NAT
//!   or load balancer forgets a connection. New connections work.
//! - **reset**: [`FaultProxy::reset_all`] ends every open connection at once with an RST
//!   on both sides; `reset_after` ends each connection so after that many bytes from the
//!   server (mid-frame, unless a frame ends exactly there).
//!
//! The proxy reads at most [`CHUNK`] bytes at a time and holds at most [`IN_FLIGHT`] chunks
//! per direction, so a stopped direction pushes back on its sender as a slow link does.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The most bytes read from a socket at once.
pub const CHUNK: usize = 16 * 1024;
/// The most chunks held per direction of a connection.
pub const IN_FLIGHT: usize = 16;

/// The faults in effect; change them with [`FaultProxy::set`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    pub latency: Duration,
    pub jitter: Duration,
    /// Bytes a second in each direction; `None`: as fast as loopback.
    pub bandwidth: Option<u64>,
    /// Pieces of at most this many bytes; `None`: as read.
    pub split: Option<usize>,
    pub blackhole: bool,
    /// Reset each connection after this many bytes from the server.
    pub reset_after: Option<u64>,
}

/// Which way data goes through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// From the client to the server.
    Up,
    /// From the server to the client.
    Down,
}

/// What a connection's two directions watch besides the faults: a reset of all connections,
/// and whether this connection was frozen (half-open).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Fate {
    resets: u64,
    frozen: bool,
}

/// The proxy, forwarding from a free loopback port to one target until dropped.
pub struct FaultProxy {
    /// The address clients connect to.
    pub addr: SocketAddr,
    faults: watch::Sender<Faults>,
    resets: Arc<AtomicU64>,
    /// The fate of every connection accepted so far (those ended are skipped cheaply).
    connections: Arc<Mutex<Vec<watch::Sender<Fate>>>>,
    accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy to `target`, with no faults yet.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (faults, _) = watch::channel(Faults::default());
        let resets = Arc::new(AtomicU64::new(0));
        let connections: Arc<Mutex<Vec<watch::Sender<Fate>>>> = Arc::default();
        let accepted = Arc::new(AtomicU64::new(0));
        let task = {
            let (faults, resets) = (faults.clone(), resets.clone());
            let (connections, accepted) = (connections.clone(), accepted.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    let (fate, _) = watch::channel(Fate {
                        resets: resets.load(Ordering::Relaxed),
                        frozen: false,
                    });
                    let mut all = connections.lock().unwrap();
                    all.retain(|fate| fate.receiver_count() > 0);
                    all.push(fate.clone());
                    drop(all);
                    tokio::spawn(relay(client, target, faults.subscribe(), fate));
                }
            })
        };
        Ok(Self {
            addr,
            faults,
            resets,
            connections,
            accepted,
            task,
        })
    }

    /// `http://` and the proxy's address.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Puts `faults` in effect now, on open connections and new ones.
    pub fn set(&self, faults: Faults) {
        self.faults.send_replace(faults);
    }

    /// Changes the faults in effect.
    pub fn update(&self, change: impl FnOnce(&mut Faults)) {
        self.faults.send_modify(change);
    }

    /// Resets every open connection (an RST both ways).
    pub fn reset_all(&self) {
        let resets = self.resets.fetch_add(1, Ordering::Relaxed) + 1;
        for fate in self.connections.lock().unwrap().iter() {
            fate.send_modify(|fate| fate.resets = resets);
        }
    }

    /// Makes every connection open now half-open: see the module documentation.
    pub fn freeze_open(&self) {
        for fate in self.connections.lock().unwrap().iter() {
            fate.send_modify(|fate| fate.frozen = true);
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.reset_all();
    }
}

/// Connects `client` to `target` and passes data both ways until both are done or a reset.
async fn relay(
    client: TcpStream,
    target: SocketAddr,
    faults: watch::Receiver<Faults>,
    fate: watch::Sender<Fate>,
) {
    let _ = client.set_nodelay(true);
    // A connection made in a blackhole reaches the server when it is lifted (as a SYN
    // sent again would).
    let (mut waiting, mut fated) = (faults.clone(), fate.subscribe());
    let start = *fated.borrow();
    if !passable(&mut waiting, &mut fated, start).await {
        let _ = client.set_zero_linger();
        return;
    }
    // A small receive buffer, so that a direction that stops reading holds little and its
    // sender feels it soon.
    let server = async {
        let socket = TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(CHUNK as u32)?;
        let server = socket.connect(target).await?;
        server.set_nodelay(true)?;
        std::io::Result::Ok(server)
    };
    let Ok(server) = server.await else {
        let _ = client.set_zero_linger();
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pass(
        Way::Up,
        client_read,
        server_write,
        faults.clone(),
        fate.subscribe(),
    );
    let down = pass(
        Way::Down,
        server_read,
        client_write,
        faults,
        fate.subscribe(),
    );
    let (up, down) = tokio::join!(up, down);
    if up.is_none() || down.is_none() {
        // A reset: both sockets end with an RST, not a FIN.
        for half in [up, down].into_iter().flatten() {
            let _ = half.as_ref().set_zero_linger();
        }
    }
}

/// One direction of a connection: reads `from`, holds each piece as the faults say, and
/// writes it to `to`. Returns the writing half when it ended normally (the reader's end
/// passed on), `None` after a reset, when both halves have already been reset.
async fn pass(
    way: Way,
    mut from: OwnedReadHalf,
    to: OwnedWriteHalf,
    mut faults: watch::Receiver<Faults>,
    mut fate: watch::Receiver<Fate>,
) -> Option<OwnedWriteHalf> {
    let start = *fate.borrow();
    let (pieces, received) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let writer = tokio::spawn(deliver(way, to, received, faults.clone(), fate.clone()));
    let mut buf = vec![0; CHUNK];
    let reset = loop {
        if !passable(&mut faults, &mut fate, start).await {
            break true;
        }
        let read = tokio::select! {
            read = from.read(&mut buf) => read,
            _ = fate.changed() => continue,
        };
        let n = match read {
            Ok(0) | Err(_) => break false,
            Ok(n) => n,
        };
        let now = Instant::now();
        let current = faults.borrow().clone();
        for piece in cut(&buf[..n], current.split) {
            let due = now + delay(&current);
            if pieces.send((due, piece.to_vec())).await.is_err() {
                break;
            }
        }
    };
    if reset {
        let _ = from.as_ref().set_zero_linger();
    }
    drop(pieces);
    let to = writer.await.ok().flatten();
    if reset {
        if let Some(to) = &to {
            let _ = to.as_ref().set_zero_linger();
        }
        return None;
    }
    to
}

/// Writes the pieces of one direction when they are due and the faults let them through;
/// shuts the writing side down after the last. `None` after a reset.
async fn deliver(
    way: Way,
    mut to: OwnedWriteHalf,
    mut pieces: mpsc::Receiver<(Instant, Vec<u8>)>,
    mut faults: watch::Receiver<Faults>,
    mut fate: watch::Receiver<Fate>,
) -> Option<OwnedWriteHalf> {
    let start = *fate.borrow();
    let mut sent: u64 = 0;
    let mut last_due = Instant::now();
    while let Some((due, piece)) = pieces.recv().await {
        // In order: a piece with less delay than the one before waits for it.
        last_due = last_due.max(due);
        tokio::select! {
            () = tokio::time::sleep_until(last_due) => {}
            _ = wait_reset(&mut fate, start) => return None,
        }
        if !passable(&mut faults, &mut fate, start).await {
            let _ = to.as_ref().set_zero_linger();
            return None;
        }
        let current = faults.borrow().clone();
        if way == Way::Down {
            if let Some(limit) = current.reset_after {
                let room = limit.saturating_sub(sent) as usize;
                if room < piece.len() {
                    let _ = to.write_all(&piece[..room]).await;
                    let _ = to.as_ref().set_zero_linger();
                    return None;
                }
            }
        }
        if let Some(rate) = current.bandwidth {
            let time = Duration::from_secs_f64(piece.len() as f64 / rate.max(1) as f64);
            tokio::time::sleep(time).await;
        }
        let written = tokio::select! {
            written = to.write_all(&piece) => written,
            _ = wait_reset(&mut fate, start) => return None,
        };
        if written.is_err() {
            return Some(to);
        }
        sent += piece.len() as u64;
    }
    // The reader's end, passed on when the link lets it through.
    if !passable(&mut faults, &mut fate, start).await {
        return None;
    }
    let _ = to.shutdown().await;
    Some(to)
}

/// Waits while the link passes nothing (a blackhole; a frozen connection, for ever).
/// `false` on a reset.
async fn passable(
    faults: &mut watch::Receiver<Faults>,
    fate: &mut watch::Receiver<Fate>,
    start: Fate,
) -> bool {
    loop {
        let now = *fate.borrow_and_update();
        if now.resets != start.resets {
            return false;
        }
        if !now.frozen && !faults.borrow_and_update().blackhole {
            return true;
        }
        tokio::select! {
            _ = faults.changed() => {}
            _ = fate.changed() => {}
        }
    }
}

/// Completes when the connection is reset.
async fn wait_reset(fate: &mut watch::Receiver<Fate>, start: Fate) {
    let _ = fate.wait_for(|now| now.resets != start.resets).await;
}

/// `data` in pieces of 1 to `split` bytes, cut at random; whole without `split`.
fn cut(data: &[u8], split: Option<usize>) -> Vec<&[u8]> {
    let Some(most) = split.filter(|&most| most > 0) else {
        return vec![data];
    };
    let mut pieces = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let size = 1 + fastrand::usize(..most);
        let (piece, after) = rest.split_at(size.min(rest.len()));
        pieces.push(piece);
        rest = after;
    }
    pieces
}

/// How long a piece is held: `latency` plus or minus up to `jitter`.
fn delay(faults: &Faults) -> Duration {
    if faults.jitter.is_zero() {
        return faults.latency;
    }
    let jitter = faults.jitter.as_micros() as u64;
    let offset = fastrand::u64(..=2 * jitter) as i64 - jitter as i64;
    let micros = (faults.latency.as_micros() as i64 + offset).max(0);
    Duration::from_micros(micros as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_every_byte_in_order_in_small_pieces() {
        let data: Vec<u8> = (0..=255).collect();
        let pieces = cut(&data, Some(3));
        assert!(pieces.iter().all(|piece| (1..=3).contains(&piece.len())));
        assert_eq!(pieces.concat(), data);
        assert_eq!(cut(&data, Some(1)).len(), data.len());
        assert_eq!(cut(&data, None), vec![&data[..]]);
    }

    #[test]
    fn delay_stays_within_the_jitter() {
        let faults = Faults {
            latency: Duration::from_millis(200),
            jitter: Duration::from_millis(100),
            ..Faults::default()
        };
        for _ in 0..1000 {
            let delay = delay(&faults);
            assert!((Duration::from_millis(100)..=Duration::from_millis(300)).contains(&delay));
        }
    }
}

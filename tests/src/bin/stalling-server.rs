//! A server that misbehaves the way hanging networks do, for the browser tests of the
//! EventSource wrapper (`scripts/test.sh` starts it and passes its URL on):
//!
//! - `GET /hang`: reads the request and never answers, as a dead upstream behind a proxy;
//! - `GET /held`: answers `200 text/event-stream` headers and never a byte of body, as a
//!   buffering proxy holding the stream back.
//!
//! Every connection stays open until the client gives up. Prints `listening on URL`.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HELD_HEADERS: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
cache-control: no-cache\r\naccess-control-allow-origin: *\r\n\r\n";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    loop {
        let (socket, _) = listener.accept().await?;
        tokio::spawn(stall(socket));
    }
}

/// Reads the request line, answers as its path says, then holds the connection.
async fn stall(mut socket: TcpStream) {
    let mut request = [0u8; 4096];
    let Ok(n) = socket.read(&mut request).await else {
        return;
    };
    if request[..n].starts_with(b"GET /held") && socket.write_all(HELD_HEADERS).await.is_err() {
        return;
    }
    // Hold until the client closes (a read of 0 bytes) or an hour passes.
    let _ = tokio::time::timeout(Duration::from_secs(3600), socket.read(&mut request)).await;
}

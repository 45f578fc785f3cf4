//! Event streams over plain HTTP/1.1 on the wire, as `http1_stream.rs` writes them (a
//! stream request's head in one packet) and as hyper does (anything else), against a
//! real server at its default settings: the response head and chunked body, the
//! connection going on after a stream ends, a refusal's JSON reason, a client that hangs
//! up, and shutdown.

mod support;

use std::time::{Duration, Instant};

use support::{config, metric, publish, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw HTTP/1.1 client connection that keeps what it has read.
struct Wire {
    socket: TcpStream,
    read: Vec<u8>,
}

impl Wire {
    async fn connect(server: &TestServer) -> Self {
        let addr = server.url.trim_start_matches("http://");
        Self {
            socket: TcpStream::connect(addr).await.unwrap(),
            read: Vec::new(),
        }
    }

    /// Sends a `GET` of `target` in one write.
    async fn get(&mut self, target: &str) {
        let head = format!("GET {target} HTTP/1.1\r\nHost: hub\r\nOrigin: http://app\r\n\r\n");
        self.socket.write_all(head.as_bytes()).await.unwrap();
    }

    /// Reads until what has been read (and not yet taken) holds `marker`; returns it up
    /// to and with the marker.
    async fn until(&mut self, marker: &[u8]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(at) = self.read.windows(marker.len()).position(|w| w == marker) {
                let taken: Vec<u8> = self.read.drain(..at + marker.len()).collect();
                return String::from_utf8(taken).unwrap();
            }
            let mut buffer = [0; 4096];
            let n = tokio::time::timeout_at(deadline.into(), self.socket.read(&mut buffer))
                .await
                .unwrap_or_else(|_| panic!("no {:?} within 10 s", String::from_utf8_lossy(marker)))
                .unwrap();
            assert!(n > 0, "closed before {:?}", String::from_utf8_lossy(marker));
            self.read.extend_from_slice(&buffer[..n]);
        }
    }

    /// Waits, up to `limit`, for the server to close the connection without sending
    /// anything more; returns how long that took.
    async fn closed_within(&mut self, limit: Duration) -> Duration {
        let waiting = Instant::now();
        let mut rest = [0; 64];
        let n = tokio::time::timeout(limit, self.socket.read(&mut rest))
            .await
            .unwrap_or_else(|_| panic!("the connection is still open {limit:?} later"))
            .unwrap_or(0);
        assert_eq!(n, 0, "closed without anything more");
        waiting.elapsed()
    }

    /// Reads a response whose length is given, returning its head and body.
    async fn response(&mut self) -> (String, String) {
        let head = self.until(b"\r\n\r\n").await;
        let length: usize = field(&head, "content-length").parse().unwrap();
        while self.read.len() < length {
            let mut buffer = [0; 4096];
            let n = self.socket.read(&mut buffer).await.unwrap();
            assert!(n > 0, "closed within a body");
            self.read.extend_from_slice(&buffer[..n]);
        }
        let body = String::from_utf8(self.read.drain(..length).collect()).unwrap();
        (head, body)
    }
}

/// The value of the field `name` in a response head (names are case-insensitive).
fn field<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or_else(|| panic!("no {name} in {head}"))
}

#[tokio::test]
async fn a_stream_goes_out_chunked_and_the_connection_takes_the_next_request() {
    let server = TestServer::start(config()).await;
    let mut wire = Wire::connect(&server).await;
    wire.get("/sse/time?count=3&interval_ms=10").await;
    let head = wire.until(b"\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(field(&head, "content-type"), "text/event-stream");
    assert_eq!(field(&head, "transfer-encoding"), "chunked");
    assert_eq!(field(&head, "cache-control"), "no-cache");
    assert_eq!(field(&head, "access-control-allow-origin"), "http://app");
    assert!(field(&head, "date").ends_with(" GMT"), "{head}");
    // Three ticks in chunks, the first with `retry:`, then the last chunk.
    let body = wire.until(b"\r\n0\r\n\r\n").await;
    assert!(body.contains("retry: 2000\n"), "{body}");
    for n in 1..=3 {
        assert!(
            body.contains(&format!("event: time\nid: {n}\ndata: ")),
            "{body}"
        );
    }
    // The same connection: an API call, then another stream.
    wire.get("/healthz").await;
    let (head, body) = wire.response().await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(body.contains(r#""status":"ok""#), "{body}");
    wire.get("/sse/time?count=1&interval_ms=10").await;
    let body = wire.until(b"\r\n0\r\n\r\n").await;
    assert!(body.contains("event: time\nid: 1\n"), "{body}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_refused_stream_gets_its_json_reason_and_the_connection_goes_on() {
    let server = TestServer::start(config()).await;
    let mut wire = Wire::connect(&server).await;
    wire.get("/events?stream=no%20spaces").await;
    let (head, body) = wire.response().await;
    assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
    assert_eq!(field(&head, "content-type"), "application/json");
    assert!(body.starts_with(r#"{"error":"#), "{body}");
    // A finished count stream: `204`, no body, and the connection goes on.
    wire.get("/sse/time?count=2&interval_ms=10&lastEventId=2")
        .await;
    let head = wire.until(b"\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 204 No Content\r\n"), "{head}");
    wire.get("/healthz").await;
    let (head, _) = wire.response().await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn notifications_arrive_whole_however_the_head_was_split() {
    let server = TestServer::start(config()).await;
    let mut whole = Wire::connect(&server).await;
    whole.get("/events?stream=split").await;
    // The head in two packets, 50 ms apart: hyper's path.
    let mut split = Wire::connect(&server).await;
    split
        .socket
        .write_all(b"GET /events?stream=split HTTP/1.1\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    split.socket.write_all(b"Host: hub\r\n\r\n").await.unwrap();
    for wire in [&mut whole, &mut split] {
        wire.until(b"\r\n\r\n").await;
        wire.until(b"event: heartbeat\n").await;
        wire.until(b"\n\n\r\n").await;
    }
    let sent = publish(&server, "split", "one", "line 1\nline 2").await;
    for wire in [&mut whole, &mut split] {
        let event = wire.until(b"\n\n\r\n").await;
        assert!(
            event.contains(&format!("id: {}\ndata: {{", sent.id)),
            "{event}"
        );
        assert!(event.contains(r#""body":"line 1\nline 2""#), "{event}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_subscriber_that_hangs_up_frees_its_stream_at_once() {
    // Default settings: the next heartbeat is 15 s away, so only watching the socket can
    // notice the hang-up within the second this test allows.
    let server = TestServer::start(config()).await;
    let mut wire = Wire::connect(&server).await;
    wire.get("/events?stream=leaving").await;
    wire.until(b"event: heartbeat\n").await;
    let open = || metric(&server, "notify_hub_streams_open");
    assert_eq!(open().await, Some(1.0));
    let left = Instant::now();
    drop(wire);
    while open().await != Some(0.0) {
        assert!(
            left.elapsed() < Duration::from_secs(1),
            "the stream is still open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "a hung-up subscriber's stream freed in {:?}",
        left.elapsed()
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_interrupts_a_stream_without_its_last_chunk() {
    let server = TestServer::start(config()).await;
    let mut wire = Wire::connect(&server).await;
    wire.get("/events?stream=closing").await;
    wire.until(b"event: heartbeat\n").await;
    wire.until(b"\n\n\r\n").await;
    let stopping = tokio::spawn(server.stop());
    // Nothing more, not the last chunk: the connection just ends, as a dropped one does.
    wire.closed_within(Duration::from_secs(5)).await;
    stopping.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_connection_left_idle_after_a_stream_is_closed_at_the_header_timeout() {
    // Default settings: a connection must bring each request within 10 s.
    let server = TestServer::start(config()).await;
    let mut wire = Wire::connect(&server).await;
    wire.get("/events?stream=no%20spaces").await;
    wire.response().await;
    let after = wire.closed_within(Duration::from_secs(15)).await;
    assert!(
        after >= Duration::from_secs(9),
        "closed after {after:?}, before the header timeout"
    );
    println!("an idle connection after a refused stream closed after {after:?}");
    server.stop().await.unwrap();
}

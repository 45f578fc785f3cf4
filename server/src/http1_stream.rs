//! Event streams over plain HTTP/1.1, written straight to the socket: the lean path that
//! keeps an idle subscriber at a few KiB.
//!
//! hyper gives every HTTP/1 connection an 8 KiB buffer for the response head up front and
//! an 8 KiB read buffer at its first read, and keeps both for as long as a response
//! streams: 16 of the 20 KiB that an idle `/events` subscriber cost (bench workload E,
//! 19,000 subscribers: 20.4 KiB each, against 1.3 KiB for a raw tokio writer; 6.0 KiB
//! through this path, measured in the same session). A stream needs neither once its
//! head is parsed. So the first request of a plain connection is
//! peeked at (nothing is read from the socket yet): a `GET` of one of the stream routes
//! ([`crate::routes::STREAM_PATHS`]), complete in what has arrived, over HTTP/1.1 without
//! a body or an upgrade, is parsed here with `httparse` and answered by the same router,
//! middleware and SSE encoding ([`crate::sse`]) as any other; only the bytes of its
//! response (head, chunked body) are written here, each batch of ready frames in one
//! write. Everything else (another route or method, a head split over several packets,
//! HTTP/1.0, TLS) goes to hyper untouched, and so does the connection itself once a
//! stream has ended, for whatever the client asks next on it.
//!
//! While the stream is open the socket is watched for the client hanging up, as hyper
//! does (until the client sends anything more), so a subscriber that leaves frees its
//! stream at once, not at the next heartbeat.

use std::io::{self, Write as _};
use std::pin::Pin;
use std::task::Poll;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use bytes::{BufMut, Bytes, BytesMut};
use http_body::Body as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_io_timeout::TimeoutStream;

use crate::routes::STREAM_PATHS;

/// A plain connection's socket as the accept loop serves it: writes that make no progress
/// for the send timeout fail.
pub type Socket = Pin<Box<TimeoutStream<TcpStream>>>;

/// Most bytes of a request head this path looks at; a longer head goes to hyper, whose
/// limits answer it.
const MAX_HEAD: usize = 4096;

/// Most header fields a request on this path may have (hyper takes up to 100).
const MAX_HEADERS: usize = 64;

/// Most bytes of ready frames written in one go.
const MAX_BATCH: usize = 64 * 1024;

/// A connection's first request when it is a stream this path serves.
pub struct StreamRequest {
    pub request: Request<Body>,
    /// The length of its head, to be read off the socket when it is answered.
    pub head_len: usize,
}

/// Looks at what has arrived on `socket`, which holds at least one byte, without reading
/// it: `None` when hyper should serve it.
pub async fn peek_first_request(socket: &TcpStream) -> io::Result<Option<StreamRequest>> {
    let mut buffer = vec![0; MAX_HEAD];
    let arrived = socket.peek(&mut buffer).await?;
    Ok(parse_stream_request(&buffer[..arrived])
        .map(|(request, head_len)| StreamRequest { request, head_len }))
}

/// `head` as a stream request this path serves, with the head's length; `None` for
/// anything hyper should see.
pub(crate) fn parse_stream_request(head: &[u8]) -> Option<(Request<Body>, usize)> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    let httparse::Status::Complete(head_len) = parsed.parse(head).ok()? else {
        return None;
    };
    let target = parsed.path?;
    let path = target.split('?').next().unwrap_or_default();
    if parsed.method != Some("GET") || parsed.version != Some(1) || !STREAM_PATHS.contains(&path) {
        return None;
    }
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(target)
        .body(Body::empty())
        .ok()?;
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(field.value).ok()?;
        let bodiless = if name == header::CONTENT_LENGTH {
            value.as_bytes() == b"0"
        } else if name == header::CONNECTION {
            // `keep-alive`, the default, is the only choice this path makes.
            value.as_bytes().eq_ignore_ascii_case(b"keep-alive")
        } else {
            ![header::TRANSFER_ENCODING, header::UPGRADE, header::EXPECT].contains(&name)
        };
        if !bodiless {
            return None;
        }
        request.headers_mut().append(name, value);
    }
    Some((request, head_len))
}

/// Reads the head of the request being served off `socket`, then writes `response` to
/// it. Returns once the response has ended and the connection can take another request;
/// an error when the client hung up, the connection or the body failed, or the body did
/// not match its length: the connection is then to be closed.
pub async fn respond(
    socket: &mut Socket,
    head_len: usize,
    response: Response<Body>,
) -> io::Result<()> {
    socket.read_exact(&mut vec![0; head_len]).await?;
    let (parts, mut body) = response.into_parts();
    let bodiless = parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED
        || parts.status.is_informational();
    let length = if bodiless {
        None
    } else {
        parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .or_else(|| body.size_hint().exact())
    };
    let chunked = !bodiless && length.is_none();
    let mut head = BytesMut::with_capacity(256);
    head.put_slice(b"HTTP/1.1 ");
    head.put_slice(parts.status.as_str().as_bytes());
    head.put_u8(b' ');
    head.put_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    head.put_slice(b"\r\n");
    for (name, value) in parts
        .headers
        .iter()
        .filter(|(name, _)| ![header::CONTENT_LENGTH, header::TRANSFER_ENCODING].contains(name))
    {
        put_field(&mut head, name.as_str(), value.as_bytes());
    }
    if !parts.headers.contains_key(header::DATE) {
        put_field(
            &mut head,
            "date",
            httpdate::fmt_http_date(SystemTime::now()).as_bytes(),
        );
    }
    match length {
        Some(length) => put_field(&mut head, "content-length", length.to_string().as_bytes()),
        None if chunked => put_field(&mut head, "transfer-encoding", b"chunked"),
        None => {}
    }
    head.put_slice(b"\r\n");
    socket.write_all(&head).await?;
    // Not kept for as long as the stream lasts.
    drop(head);
    if bodiless {
        return Ok(());
    }
    // Whether a read would tell a hang-up: until the client sends anything (a next
    // request, pipelined, which stays unread for hyper); hyper stops watching then too.
    let mut watching = true;
    let mut sent = 0;
    loop {
        let (mut batch, next) = tokio::select! {
            gathered = gather(&mut body, chunked) => gathered,
            hung_up = hung_up(socket.get_ref()), if watching => {
                if hung_up {
                    return Err(io::ErrorKind::ConnectionAborted.into());
                }
                watching = false;
                continue;
            }
        };
        sent += batch.data;
        socket.write_all(batch.finish()).await?;
        match next {
            Next::Ended => break,
            // What was ready before the body failed is out; the connection ends here,
            // without the last chunk.
            Next::Failed(err) => return Err(io::Error::other(err)),
            Next::Full => {}
            // The body said "not now" after some frames. As hyper does, the task lets go
            // before asking again, so that a body that yields to the scheduler (a
            // replay does every 16 entries, for the other tasks' sake) really yields.
            Next::Paused => tokio::task::yield_now().await,
        }
    }
    if length.is_some_and(|length| length != sent) {
        // The client cannot tell where this response ends: the connection cannot go on.
        return Err(io::Error::other(format!(
            "the body had {sent} bytes, not its content-length {length:?}"
        )));
    }
    if chunked {
        socket.write_all(b"0\r\n\r\n").await?;
    }
    Ok(())
}

/// Why [`gather`] stopped.
enum Next {
    /// The body has ended.
    Ended,
    /// The body failed (the server shuts down, or the stream was cut): the response is
    /// interrupted after the batch.
    Failed(axum::Error),
    /// The batch is as large as one write should be; more frames may be ready.
    Full,
    /// The body has nothing more ready now.
    Paused,
}

/// The frames of `body` that are ready, up to [`MAX_BATCH`] bytes, once at least one is
/// (or the body has ended or failed): one write for a burst.
async fn gather(body: &mut Body, chunked: bool) -> (Batch, Next) {
    let mut batch = Batch::new(chunked);
    let next = std::future::poll_fn(|cx| loop {
        if batch.data >= MAX_BATCH as u64 {
            return Poll::Ready(Next::Full);
        }
        match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => batch.add(frame),
            Poll::Ready(Some(Err(err))) => return Poll::Ready(Next::Failed(err)),
            Poll::Ready(None) => return Poll::Ready(Next::Ended),
            Poll::Pending if batch.is_empty() => return Poll::Pending,
            Poll::Pending => return Poll::Ready(Next::Paused),
        }
    })
    .await;
    (batch, next)
}

/// One `name: value` line of a response head.
fn put_field(head: &mut BytesMut, name: &str, value: &[u8]) {
    head.put_slice(name.as_bytes());
    head.put_slice(b": ");
    head.put_slice(value);
    head.put_slice(b"\r\n");
}

/// Whether the client hung up (`true`) or sent something (`false`), once it did either;
/// nothing is read.
async fn hung_up(socket: &TcpStream) -> bool {
    let mut byte = [0; 1];
    matches!(socket.peek(&mut byte).await, Ok(0) | Err(_))
}

/// The bytes of one write: the frames of the body that were ready, as one chunk when
/// `chunked`.
///
/// The chunk's size line is written into room kept before the data, once the size is
/// known, and the buffer starts large enough for a typical burst: in fan-out workload B
/// (12.5 frames a write), a chunk per frame, its size line formatted into a new `String`,
/// and the buffer growing by reallocation put `malloc`, `realloc` and `free` at a third of
/// the lean path's own CPU time. Nothing is allocated before the first frame: an idle
/// subscriber waits with an empty batch.
struct Batch {
    bytes: BytesMut,
    /// How many bytes of the body it holds (without the chunk's framing).
    data: u64,
    chunked: bool,
}

/// Room for a chunk's size line: up to 8 hex digits (a batch stays far below 4 GiB) and CRLF.
const SIZE_LINE: usize = 10;

/// A batch's first capacity: the 12.5 frames of about 140 B that a write carried in B.
const FIRST_CAPACITY: usize = 2048;

impl Batch {
    fn new(chunked: bool) -> Self {
        Self {
            bytes: BytesMut::new(),
            data: 0,
            chunked,
        }
    }

    /// Whether no frame's data is in it yet.
    fn is_empty(&self) -> bool {
        self.data == 0
    }

    /// Adds a frame's data (trailers have no place in these responses and are dropped).
    fn add(&mut self, frame: http_body::Frame<Bytes>) {
        let Ok(data) = frame.into_data() else { return };
        if data.is_empty() {
            return;
        }
        if self.is_empty() {
            self.bytes
                .reserve(FIRST_CAPACITY.max(SIZE_LINE + data.len() + 2));
            if self.chunked {
                self.bytes.put_bytes(0, SIZE_LINE);
            }
        }
        self.data += data.len() as u64;
        self.bytes.put_slice(&data);
    }

    /// The bytes to write: the chunk (size line, data, CRLF) when chunked; nothing when
    /// empty (a chunk of size 0 would end the body).
    fn finish(&mut self) -> &[u8] {
        if !self.chunked || self.is_empty() {
            return &self.bytes;
        }
        let mut line = [0u8; SIZE_LINE];
        let mut free = &mut line[..];
        // Cannot fail: a batch's size has at most 8 hex digits (see `SIZE_LINE`).
        let _ = write!(free, "{:x}\r\n", self.data);
        let len = SIZE_LINE - free.len();
        let start = SIZE_LINE - len;
        self.bytes[start..SIZE_LINE].copy_from_slice(&line[..len]);
        self.bytes.put_slice(b"\r\n");
        &self.bytes[start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_a_whole_stream_get_and_leaves_the_rest_to_hyper() {
        let head = b"GET /events?stream=a HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 4\r\n\r\n";
        let (request, len) = parse_stream_request(head).expect("a stream request");
        assert_eq!(len, head.len());
        assert_eq!(request.uri(), "/events?stream=a");
        assert_eq!(request.headers()["last-event-id"], "4");
        let pipelined = [&head[..], b"GET /healthz HTTP/1.1\r\n\r\n"].concat();
        assert_eq!(
            parse_stream_request(&pipelined).map(|(_, n)| n),
            Some(head.len())
        );
        for other in [
            &b"GET /events?stream=a HTTP/1.1\r\nHost: x\r\n"[..],
            b"GET /events HTTP/1.0\r\n\r\n",
            b"POST /events HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
            b"GET /api/streams HTTP/1.1\r\n\r\n",
            b"GET /events/x HTTP/1.1\r\n\r\n",
            b"GET /events HTTP/1.1\r\nConnection: close\r\n\r\n",
            b"GET /events HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"GET /events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\x16\x03\x01\x02\x00",
        ] {
            assert!(
                parse_stream_request(other).is_none(),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn writes_the_ready_frames_as_one_chunk() {
        let mut batch = Batch::new(true);
        assert_eq!(batch.finish(), b"");
        batch.add(http_body::Frame::data(Bytes::from_static(b"data: 1\n\n")));
        batch.add(http_body::Frame::data(Bytes::new()));
        batch.add(http_body::Frame::data(Bytes::from(vec![b'x'; 26])));
        let mut want = b"23\r\ndata: 1\n\n".to_vec();
        want.extend([b'x'; 26]);
        want.extend(b"\r\n");
        assert_eq!(batch.finish(), &want[..]);
        assert_eq!(batch.data, 9 + 26);

        let mut plain = Batch::new(false);
        plain.add(http_body::Frame::data(Bytes::from_static(b"data: 1\n\n")));
        assert_eq!(plain.finish(), b"data: 1\n\n");
    }
}

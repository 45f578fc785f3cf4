//! What the server refuses before a handler runs, against a real server: slow or silent
//! clients (slowloris), oversized requests, slow bodies. Each prints what it measured.

mod support;

use std::time::{Duration, Instant};

use server::config::Config;
use support::{config, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Waits for the server to close `socket` (a read of 0 bytes or an error), up to `limit`.
async fn closed_within(mut socket: TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline.into(), socket.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // A 408 or similar before closing is fine: keep reading until the close.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn connections_that_never_send_or_never_finish_headers_are_closed() {
    let server = TestServer::start(Config {
        header_timeout: Duration::from_secs(1),
        ..config()
    })
    .await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    let start = Instant::now();
    let mut held = Vec::new();
    for n in 0..300 {
        let mut socket = TcpStream::connect(&addr).await.unwrap();
        if n % 2 == 0 {
            // Headers that never finish.
            socket
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .unwrap();
        }
        held.push(socket);
    }
    // The server still answers others meanwhile.
    let health = reqwest::get(server.at("/healthz")).await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    let outcomes = futures::future::join_all(
        held.into_iter()
            .map(|socket| closed_within(socket, Duration::from_secs(5))),
    )
    .await;
    let closed = outcomes.iter().filter(|&&c| c).count();
    println!(
        "slowloris: {closed} of 300 connections (half silent, half with unfinished headers) \
         closed within {:.1} s with a 1 s header timeout",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(closed, 300);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_requests_get_4xx_never_500() {
    let server = TestServer::start(config()).await;
    let client = reqwest::Client::new();
    let long_path = format!("/{}", "a".repeat(10_000));
    let long_segment = format!("/{}", "a".repeat(300));
    let long_stream = format!("/events?stream={}", "a".repeat(300));
    for (path, status) in [
        (long_path.as_str(), 414),
        (long_segment.as_str(), 404),
        (long_stream.as_str(), 400),
    ] {
        let response = client.get(server.at(path)).send().await.unwrap();
        assert_eq!(
            response.status().as_u16(),
            status,
            "{}",
            &path[..40.min(path.len())]
        );
        let body: common::ErrorBody = response.json().await.unwrap();
        assert!(!body.error.is_empty());
    }
    let big_header = client
        .get(server.at("/healthz"))
        .header("x-big", "b".repeat(40_000))
        .send()
        .await
        .unwrap();
    assert_eq!(big_header.status().as_u16(), 431);
    let body: common::ErrorBody = big_header.json().await.unwrap();
    assert!(body.error.contains("headers"), "{body:?}");
    let wrong_method = client
        .delete(server.at("/api/notifications"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status().as_u16(), 405);
    let body: common::ErrorBody = wrong_method.json().await.unwrap();
    assert_eq!(body.error, "method not allowed");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_body_that_never_arrives_gets_408() {
    let server = TestServer::start(Config {
        request_timeout: Duration::from_secs(1),
        ..config()
    })
    .await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut socket = TcpStream::connect(&addr).await.unwrap();
    socket
        .write_all(
            b"POST /api/notifications HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"title\":",
        )
        .await
        .unwrap();
    let start = Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains(r#"{"error":"request timeout"}"#),
        "{answer}"
    );
    println!(
        "a stalled body was answered 408 after {:.1} s",
        start.elapsed().as_secs_f64()
    );
    server.stop().await.unwrap();
}

/// Opens `/events` as if from `client` (through a trusted proxy's `X-Forwarded-For`).
async fn open_stream(server: &TestServer, client: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(server.at("/events?stream=limited"))
        .header("x-forwarded-for", format!("203.0.113.9, {client}"))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn streams_over_the_limits_are_refused_and_open_ones_go_on() {
    let server = TestServer::start(Config {
        max_connections: Some(3),
        max_connections_per_ip: Some(2),
        trust_proxy: true,
        ..config()
    })
    .await;
    let first = open_stream(&server, "10.0.0.1").await;
    let _second = open_stream(&server, "10.0.0.1").await;
    let third = open_stream(&server, "10.0.0.1").await;
    assert_eq!(third.status().as_u16(), 429);
    assert_eq!(third.headers()["retry-after"], "5");
    let reason: common::ErrorBody = third.json().await.unwrap();
    assert!(reason.error.contains("10.0.0.1"), "{reason:?}");

    let other = open_stream(&server, "10.0.0.2").await;
    assert_eq!(other.status().as_u16(), 200);
    let full = open_stream(&server, "10.0.0.3").await;
    assert_eq!(full.status().as_u16(), 503);
    assert_eq!(full.headers()["retry-after"], "5");

    // The open ones are unaffected.
    let mut events = support::events(first);
    let sent = support::publish(&server, "limited", "still here", "").await;
    assert_eq!(support::next_notification(&mut events).await, sent);

    // A stream that ends frees its place.
    drop(other);
    let mut freed = None;
    for _ in 0..50 {
        let retry = open_stream(&server, "10.0.0.3").await;
        if retry.status() == 200 {
            freed = Some(retry);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed.is_some(), "the closed stream's place was never freed");
    println!(
        "stream limits: 3 in all and 2 per client held; the 4th got 503, a 3rd from one client 429"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn without_trust_proxy_x_forwarded_for_is_ignored() {
    let server = TestServer::start(Config {
        max_connections_per_ip: Some(1),
        ..config()
    })
    .await;
    let _one = open_stream(&server, "10.0.0.1").await;
    let spoofed = open_stream(&server, "10.0.0.2").await;
    assert_eq!(spoofed.status().as_u16(), 429, "both come from 127.0.0.1");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn publishes_over_a_clients_rate_get_429_and_nothing_is_lost() {
    let server = TestServer::start(Config {
        publish_rate: std::num::NonZeroU32::new(5),
        publish_burst: std::num::NonZeroU32::new(5).unwrap(),
        trust_proxy: true,
        ..config()
    })
    .await;
    let client = reqwest::Client::new();
    let post = |from: &'static str, title: String| {
        client
            .post(server.at("/api/notifications"))
            .header("x-forwarded-for", from)
            .json(&serde_json::json!({"stream": "rated", "title": title}))
            .send()
    };
    let mut accepted = 0;
    let mut refused = None;
    for n in 0..20 {
        let response = post("10.0.0.1", format!("n{n}")).await.unwrap();
        match response.status().as_u16() {
            201 => accepted += 1,
            429 => {
                refused.get_or_insert(response);
            }
            other => panic!("unexpected {other}"),
        }
    }
    let refused = refused.expect("the burst of 5 was exceeded");
    assert!(
        refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let reason: common::ErrorBody = refused.json().await.unwrap();
    assert!(reason.error.contains("too many publishes"), "{reason:?}");
    assert!(
        (5..=7).contains(&accepted),
        "{accepted} accepted in a burst of 5 at 5/s"
    );
    // Another client is not affected; what was accepted is all stored.
    assert_eq!(
        post("10.0.0.2", "other".into())
            .await
            .unwrap()
            .status()
            .as_u16(),
        201
    );
    let history: common::History = client
        .get(server.at("/api/notifications?stream=rated&limit=100"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history.notifications.len(), accepted + 1);
    println!(
        "publish rate 5/s, burst 5: {accepted} of 20 back-to-back publishes accepted, the rest 429"
    );
    server.stop().await.unwrap();
}

/// A burst of connections larger than `TcpListener::bind`'s accept queue (128) while the
/// server cannot accept (stopped with SIGSTOP, as a busy or paused process would be):
/// the kernel completes and queues every handshake, and once the server runs again each
/// queued request is answered. With a queue of 128, the connections past it were not
/// completed, and one whose handshake's last ACK was dropped sent its request only when
/// retransmitting, after the header timeout had closed it.
#[tokio::test]
async fn a_burst_of_connections_to_a_stopped_server_is_queued_and_then_served() {
    const BURST: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let server =
        e2e::ServerProcess::api_only("127.0.0.1:0", &dir.path().join("hub.db"), &[]).unwrap();
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &server.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {name}");
    };
    signal("-STOP");
    let started = Instant::now();
    let connects = (0..BURST).map(|_| async {
        let connect = TcpStream::connect(&server.addr);
        let mut socket = tokio::time::timeout(Duration::from_secs(3), connect)
            .await
            .ok()?
            .ok()?;
        let request = "GET /events?stream=burst HTTP/1.1\r\nhost: hub\r\n\r\n";
        socket.write_all(request.as_bytes()).await.ok()?;
        Some(socket)
    });
    let sockets: Vec<TcpStream> = futures::future::join_all(connects)
        .await
        .into_iter()
        .flatten()
        .collect();
    println!(
        "{} of {BURST} connections completed in {:?} while the server was stopped",
        sockets.len(),
        started.elapsed()
    );
    assert_eq!(
        sockets.len(),
        BURST,
        "every handshake completed and was queued"
    );
    signal("-CONT");
    let started = Instant::now();
    let answers = sockets.into_iter().map(|mut socket| async move {
        let mut head = [0u8; 12];
        let read = socket.read_exact(&mut head);
        matches!(
            tokio::time::timeout(Duration::from_secs(10), read).await,
            Ok(Ok(_)) if &head == b"HTTP/1.1 200"
        )
    });
    let served = futures::future::join_all(answers)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count();
    println!(
        "{served} of {BURST} answered 200 within {:?} of the server running again",
        started.elapsed()
    );
    assert_eq!(served, BURST);
}

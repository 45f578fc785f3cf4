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

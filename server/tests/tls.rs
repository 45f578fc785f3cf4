//! HTTPS and HTTP/2 in the binary: both protocols on one port, SSE over HTTP/2 (replay,
//! streams counted against the limits, not sockets), a renewed certificate taken without a
//! restart while streams stay open, clear errors for bad files, and the CLI over https with
//! a private CA. Certificates are made at test time with rcgen.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use server::config::Config;
use support::https::{certificate, client, https_server, write};
use support::{config, events};

const BIN: &str = env!("CARGO_BIN_EXE_server");

#[tokio::test]
async fn https_speaks_h2_and_http1_on_one_port() {
    let dir = tempfile::tempdir().unwrap();
    let pair = certificate(false);
    let (_server, url) = https_server(write(dir.path(), &pair), config()).await;
    for (http1, version) in [
        (false, reqwest::Version::HTTP_2),
        (true, reqwest::Version::HTTP_11),
    ] {
        let response = client(&pair.0, http1)
            .get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), version, "negotiated by ALPN");
    }
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::get(url.replace("https://", "http://") + "/healthz").await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

#[tokio::test]
async fn sse_over_h2_replays_and_counts_streams_not_sockets_against_the_limits() {
    const STREAMS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let pair = certificate(false);
    let (server, url) = https_server(
        write(dir.path(), &pair),
        Config {
            max_connections_per_ip: Some(STREAMS),
            ..config()
        },
    )
    .await;
    let client = client(&pair.0, false);
    let mut streams = Vec::new();
    for n in 0..STREAMS {
        let response = client
            .get(format!("{url}/events?stream=h2-{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        let mut events = events(response);
        let greeting = events.next().await.unwrap();
        assert_eq!(greeting.event, common::events::HEARTBEAT);
        streams.push(events);
    }
    // One connection carries them all; the limit counts streams.
    let over = client
        .get(format!("{url}/events?stream=h2-over"))
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), 429, "the limit counts streams, not sockets");
    let mut ids = Vec::new();
    for n in 0..STREAMS {
        let response = client
            .post(format!("{url}/api/notifications"))
            .json(&serde_json::json!({"stream": format!("h2-{n}"), "title": format!("t{n}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        ids.push(response.json::<common::Notification>().await.unwrap().id);
    }
    for (n, events) in streams.iter_mut().enumerate() {
        let notification = support::next_notification(events).await;
        assert_eq!(notification.title, format!("t{n}"));
    }
    drop(streams);
    // Replay over h2: from the first stream's start, its one notification.
    let response = client
        .get(format!("{url}/events?stream=h2-0"))
        .header("Last-Event-ID", "0")
        .send()
        .await
        .unwrap();
    let mut events = events(response);
    assert_eq!(support::next_notification(&mut events).await.id, ids[0]);
    drop(events);
    // Shutdown resets the open streams (so clients resume, see `attacks.rs`) and the server
    // stops within its grace.
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_renewed_certificate_serves_new_connections_while_open_streams_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (certificate(false), certificate(false));
    let (_server, url) = https_server(write(dir.path(), &old), config()).await;
    let before = client(&old.0, false);
    let response = before
        .get(format!("{url}/events?stream=renewal"))
        .send()
        .await
        .unwrap();
    let mut open = events(response);
    assert_eq!(open.next().await.unwrap().event, common::events::HEARTBEAT);

    write(dir.path(), &new);
    let renewed = Instant::now();
    let after = client(&new.0, false);
    loop {
        if after.get(format!("{url}/healthz")).send().await.is_ok() {
            break;
        }
        assert!(
            renewed.elapsed() < Duration::from_secs(30),
            "new connections still get the old certificate"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let taken = renewed.elapsed();
    // The stream opened before goes on, on its connection with the old certificate.
    let response = after
        .post(format!("{url}/api/notifications"))
        .json(&serde_json::json!({"stream": "renewal", "title": "after"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(support::next_notification(&mut open).await.title, "after");
    println!("a renewed certificate served new connections {taken:?} after the files changed; the open stream went on");
}

/// `server serve` with `args`: its exit status and what it wrote to stderr.
fn serve_fails(args: &[&Path]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--assets", "/nonexistent"])
        .arg("--db")
        .arg(dir.path().join("hub.db"))
        .arg("--tls-cert")
        .arg(args[0])
        .arg("--tls-key")
        .arg(args[1])
        .output()
        .unwrap();
    assert!(!output.status.success(), "the server started anyway");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_tls_files_stop_the_server_at_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), &certificate(false));
    let path = |name: &str| -> PathBuf { dir.path().join(name) };
    std::fs::write(path("garbage.pem"), "not a certificate").unwrap();
    let expired_dir = tempfile::tempdir().unwrap();
    let expired = write(expired_dir.path(), &certificate(true));
    let other_dir = tempfile::tempdir().unwrap();
    let other = write(other_dir.path(), &certificate(false));
    for (cert, key, reason) in [
        (
            path("missing.pem"),
            good.key.clone(),
            "cannot read the TLS certificate",
        ),
        (
            good.cert.clone(),
            path("missing.pem"),
            "cannot read the TLS key",
        ),
        (
            path("garbage.pem"),
            good.key.clone(),
            "holds no certificate",
        ),
        (
            good.cert.clone(),
            path("garbage.pem"),
            "holds no private key",
        ),
        (expired.cert.clone(), expired.key.clone(), "expired"),
        (
            good.cert.clone(),
            other.key.clone(),
            "does not go with the certificate",
        ),
    ] {
        let stderr = serve_fails(&[&cert, &key]);
        assert!(stderr.contains(reason), "expected {reason:?} in: {stderr}");
    }
    // One without the other is refused by the command line itself.
    let output = Command::new(BIN)
        .args(["serve", "--tls-cert"])
        .arg(&good.cert)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--tls-key"));
}

#[test]
fn publish_and_listen_speak_https_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pair = certificate(false);
    let files = write(dir.path(), &pair);
    let server = e2e::ServerProcess::api_only(
        "127.0.0.1:0",
        &dir.path().join("hub.db"),
        &[
            "--tls-cert",
            files.cert.to_str().unwrap(),
            "--tls-key",
            files.key.to_str().unwrap(),
        ],
    )
    .unwrap();
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let url = server.url.replace("127.0.0.1", "localhost");
    let publish = |extra: &[&str]| {
        Command::new(BIN)
            .args([
                "publish",
                "--url",
                &url,
                "--stream",
                "tls",
                "--title",
                "over https",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = publish(&[]);
    assert!(!refused.status.success(), "an unknown CA is refused");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("certificate"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let ca = files.cert.to_str().unwrap();
    let published = publish(&["--ca", ca]);
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    let listened = Command::new(BIN)
        .args([
            "listen", "--url", &url, "--stream", "tls", "--json", "--count", "1",
        ])
        .args(["--last-event-id", "0", "--ca", ca])
        .output()
        .unwrap();
    assert!(
        listened.status.success(),
        "{}",
        String::from_utf8_lossy(&listened.stderr)
    );
    let printed: common::Notification = serde_json::from_slice(&listened.stdout).unwrap();
    assert_eq!(printed.title, "over https");
}

#[tokio::test]
async fn a_stalled_h2_stream_holds_back_only_itself_and_catches_up() {
    const BURST: usize = 800;
    let dir = tempfile::tempdir().unwrap();
    let pair = certificate(false);
    let (_server, url) = https_server(write(dir.path(), &pair), config()).await;
    let client = client(&pair.0, false);
    let open = |stream: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let response = client
                .get(format!("{url}/events?stream={stream}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.version(), reqwest::Version::HTTP_2);
            response
        }
    };
    // Both on one connection: one is never read while the burst goes out.
    let stalled = open("stalled").await;
    let mut live = events(open("live").await);
    assert_eq!(live.next().await.unwrap().event, common::events::HEARTBEAT);
    let body = "x".repeat(3_900);
    for n in 0..BURST {
        for stream in ["stalled", "live"] {
            let response = client
                .post(format!("{url}/api/notifications"))
                .json(
                    &serde_json::json!({"stream": stream, "title": format!("n{n}"), "body": body}),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
        }
        // The live one keeps up though its neighbour's window is full (about 3 MB unread).
        assert_eq!(
            support::next_notification(&mut live).await.title,
            format!("n{n}")
        );
    }
    let mut stalled = events(stalled);
    for n in 0..BURST {
        assert_eq!(
            support::next_notification(&mut stalled).await.title,
            format!("n{n}")
        );
    }
}

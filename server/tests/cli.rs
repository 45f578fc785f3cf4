//! The `server` binary itself: `publish` and `listen` against it, and a restart (kill -9)
//! on the same SQLite file that a listener rides through with no loss and no duplicate.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_server");

/// A `server serve` process on `port` with the database `db`, killed when dropped.
struct Serve(Child);

impl Serve {
    fn start(port: u16, db: &Path) -> Self {
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--assets",
                "/nonexistent",
            ])
            .arg("--db")
            .arg(db)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        loop {
            let line = lines.next().expect("the server exited").unwrap();
            if line.contains("listening on") {
                break;
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        Self(child)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `server publish` and returns the stored notification it prints.
fn publish(url: &str, title: &str, extra: &[&str]) -> common::Notification {
    let output = Command::new(BIN)
        .args(["publish", "--url", url, "--stream", "cli", "--title", title])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Starts `server listen --json` and hands each printed line to a channel.
fn listen(url: &str, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(["listen", "--url", url, "--stream", "cli", "--json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn next_line(lines: &mpsc::Receiver<String>) -> common::Notification {
    let line = lines
        .recv_timeout(Duration::from_secs(15))
        .expect("listen printed nothing");
    serde_json::from_str(&line).unwrap()
}

#[test]
fn listen_prints_what_publish_sent_and_rides_through_a_kill_9_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");

    let first = Serve::start(port, &db);
    let a = publish(&url, "one", &["--body", "first body", "--level", "success"]);
    assert_eq!(
        (a.title.as_str(), a.body.as_str(), a.level),
        ("one", "first body", common::Level::Success)
    );
    let (mut listener, lines) = listen(&url, &["--last-event-id", "0", "--count", "4"]);
    assert_eq!(next_line(&lines), a);
    let b = publish(&url, "two", &[]);
    assert_eq!(next_line(&lines), b);

    drop(first); // SIGKILL: no graceful anything
    let _second = Serve::start(port, &db);
    let c = publish(&url, "three", &[]);
    let d = publish(&url, "four", &[]);
    assert_eq!(next_line(&lines), c, "resumed after {} with no loss", b.id);
    assert_eq!(next_line(&lines), d);
    assert!(
        listener.wait().unwrap().success(),
        "listen exits after --count"
    );
    assert!(
        lines.recv_timeout(Duration::from_millis(200)).is_err(),
        "no duplicate"
    );

    // What was stored before the kill is still there, in order.
    let (_, replay) = listen(&url, &["--last-event-id", &a.id, "--count", "3"]);
    assert_eq!(
        [next_line(&replay), next_line(&replay), next_line(&replay)],
        [b, c, d]
    );
}

#[test]
fn client_errors_are_one_clear_line_and_a_failure_exit() {
    let down = "http://127.0.0.1:1";
    for args in [
        vec!["publish", "--url", down, "--title", "x"],
        vec!["listen", "--url", down],
    ] {
        let output = Command::new(BIN).args(&args).output().unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with("error: cannot reach the server at"),
            "{stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
    let output = Command::new(BIN)
        .args(["listen", "--stream", "no spaces"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("stream names are"));
    let output = Command::new(BIN)
        .args(["publish", "--title", "x", "--level", "loud"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown level `loud`"));
}

#[test]
fn publish_reports_the_servers_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = Serve::start(port, &dir.path().join("hub.db"));
    let output = Command::new(BIN)
        .args([
            "publish",
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--title",
            &"x".repeat(300),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the server answered 400") && stderr.contains("at most 200"),
        "{stderr}"
    );
}

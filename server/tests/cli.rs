//! The `server` binary itself: `publish` and `listen` against it, and a restart (kill -9)
//! on the same SQLite file that a listener rides through with no loss and no duplicate.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use e2e::ServerProcess;

const BIN: &str = env!("CARGO_BIN_EXE_server");

/// `server serve` on `addr` with the database `db`, killed (SIGKILL) when dropped.
fn serve(addr: &str, db: &Path) -> ServerProcess {
    ServerProcess::start(Path::new(BIN), addr, Path::new("/nonexistent"), db, &[]).unwrap()
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
    let first = serve("127.0.0.1:0", &db);
    let (url, addr) = (first.url.clone(), first.addr.clone());
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
    let _second = serve(&addr, &db);
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
fn serve_refuses_to_start_with_an_invalid_cors_origin() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--assets", "/nonexistent"])
        .args([
            "--cors-origin",
            "https://ok.example",
            "--cors-origin",
            "app.example.com/",
        ])
        .arg("--db")
        .arg(dir.path().join("hub.db"))
        .output()
        .unwrap();
    assert!(!output.status.success(), "it must not start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`app.example.com/` is not an origin"),
        "{stderr}"
    );
    assert!(!dir.path().join("hub.db").exists(), "nothing was created");
}

#[test]
fn serve_refuses_to_start_without_a_working_redis_and_hides_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("redis://:s3cret@127.0.0.1:{free_port}");
    for (url, says) in [
        ("http://example.com", "is not a Redis URL"),
        (
            "redis://:s3cret@127.0.0.1:99999",
            "`***@127.0.0.1:99999` is not a Redis URL",
        ),
        (
            unreachable.as_str(),
            "cannot connect to Redis at redis://:***@127.0.0.1",
        ),
    ] {
        let output = Command::new(BIN)
            .args(["serve", "--addr", "127.0.0.1:0", "--assets", "/nonexistent"])
            .args(["--redis", url])
            .arg("--db")
            .arg(dir.path().join("hub.db"))
            .output()
            .unwrap();
        assert!(!output.status.success(), "it must not start with {url}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{url}: {stderr}");
        assert!(
            !stderr.contains("s3cret"),
            "the password is not shown: {stderr}"
        );
    }
}

#[test]
fn publish_checks_its_input_before_sending_and_reports_the_servers_refusal() {
    // Broken rules are named before anything is sent: no server is needed to hear it.
    let output = Command::new(BIN)
        .args([
            "publish",
            "--url",
            "http://127.0.0.1:1",
            "--title",
            &"x".repeat(300),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("title is 300 characters long; at most 200 are allowed"),
        "{stderr}"
    );

    // A URL under which the server has no API: its own JSON reason is printed.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<!doctype html>").unwrap();
    let db = dir.path().join("hub.db");
    let server = ServerProcess::start(Path::new(BIN), "127.0.0.1:0", dir.path(), &db, &[]).unwrap();
    let output = Command::new(BIN)
        .args([
            "publish",
            "--url",
            &format!("{}/nowhere", server.url),
            "--title",
            "hi",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .contains("the server answered 405: POST /nowhere/api/notifications: no such endpoint"),
        "{stderr}"
    );
}

#[test]
fn publish_waits_out_the_servers_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::api_only(
        "127.0.0.1:0",
        &dir.path().join("hub.db"),
        &["--publish-rate", "1", "--publish-burst", "1"],
    )
    .unwrap();
    publish(&server.url, "first", &[]);
    let output = Command::new(BIN)
        .args([
            "publish",
            "--url",
            &server.url,
            "--stream",
            "cli",
            "--title",
            "second",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("retry in 1 s"), "it waited: {stderr}");
    let stored: common::Notification = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(stored.title, "second");
}

#[test]
fn listen_follows_several_streams_and_a_pattern_on_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve("127.0.0.1:0", &dir.path().join("hub.db"));
    for (stream, title) in [("one", "first"), ("other", "skipped"), ("many.b", "second")] {
        let status = Command::new(BIN)
            .args([
                "publish",
                "--url",
                &server.url,
                "--stream",
                stream,
                "--title",
                title,
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let output = Command::new(BIN)
        .args([
            "listen",
            "--url",
            &server.url,
            "--stream",
            "one",
            "--stream",
            "many.*",
        ])
        .args(["--last-event-id", "0", "--count", "2"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    // Streams are merged as they come: each in order, not one order across them.
    let mut lines: Vec<&str> = printed.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{printed}");
    assert!(
        lines[0].starts_with("[many.b ") && lines[0].ends_with("info: second"),
        "{printed}"
    );
    assert!(
        lines[1].starts_with("[one ") && lines[1].ends_with("info: first"),
        "{printed}"
    );

    let refused = Command::new(BIN)
        .args(["listen", "--url", &server.url, "--stream", "bad name"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("not a stream selector"), "{stderr}");
}

/// A secret given as a flag is visible in `ps`: the command warns and names the variable
/// to use instead; given by that variable, no warning; `--help` never shows its value.
#[test]
fn a_secret_given_as_a_flag_is_warned_about_and_help_never_shows_one() {
    let secret = "flag-secret-of-at-least-16-chars";
    let flagged = Command::new(BIN)
        .args(["token", "--publish", "*", "--jwt-secret", secret])
        .output()
        .unwrap();
    assert!(flagged.status.success());
    let stderr = String::from_utf8_lossy(&flagged.stderr);
    assert!(
        stderr.contains("--jwt-secret was given on the command line")
            && stderr.contains("NOTIFY_HUB_JWT_SECRET"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(secret),
        "the warning repeats the secret: {stderr}"
    );
    let from_env = Command::new(BIN)
        .args(["token", "--publish", "*"])
        .env("NOTIFY_HUB_JWT_SECRET", secret)
        .output()
        .unwrap();
    assert!(from_env.status.success());
    assert!(
        !String::from_utf8_lossy(&from_env.stderr).contains("command line"),
        "a warning for a secret from the environment"
    );
    for command in [
        &["--help"][..],
        &["token", "--help"],
        &["publish", "--help"],
    ] {
        let help = Command::new(BIN)
            .args(command)
            .env("NOTIFY_HUB_JWT_SECRET", secret)
            .env("NOTIFY_HUB_METRICS_TOKEN", secret)
            .env("NOTIFY_HUB_TOKEN", secret)
            .env("NOTIFY_HUB_REDIS", format!("redis://:{secret}@127.0.0.1"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(text.contains("Usage"), "{text}");
        assert!(
            !text.contains(secret),
            "{command:?} shows a secret:\n{text}"
        );
    }
    println!("a secret flag is warned about by name; --help shows no secret from the environment");
}

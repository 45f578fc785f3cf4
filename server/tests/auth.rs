//! Token auth against the real server binary: every guarded endpoint without a token, with
//! an expired, a wrongly signed and a narrower one, the cookie and query forms, and the
//! token never showing up in the log.

use std::path::Path;
use std::process::Command;

use e2e::ServerProcess;

const BIN: &str = env!("CARGO_BIN_EXE_server");
const SECRET: &str = "a-test-secret-of-32-characters!!";

/// Mints a token with `server token`.
fn mint(secret: &str, args: &[&str]) -> String {
    let output = Command::new(BIN)
        .args(["token", "--jwt-secret", secret])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Status and JSON reason of a request (an empty reason for a success).
async fn status(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    if status < 400 {
        return (status, String::new());
    }
    if status == 401 {
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "a 401 names the scheme"
        );
    }
    let reason: common::ErrorBody = response.json().await.unwrap();
    (status, reason.error)
}

#[tokio::test]
async fn every_guarded_endpoint_checks_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::api_only(
        "127.0.0.1:0",
        &dir.path().join("hub.db"),
        &["--jwt-secret", SECRET, "--private-stream", "alerts.*"],
    )
    .unwrap();
    let url = |path: &str| format!("{}{path}", server.url);
    let client = reqwest::Client::new();
    let publisher = mint(
        SECRET,
        &["--sub", "ci", "--publish", "alerts.*", "--publish", "news"],
    );
    let narrow = mint(SECRET, &["--sub", "news-bot", "--publish", "news"]);
    let reader = mint(SECRET, &["--sub", "ops", "--subscribe", "alerts.*"]);
    let foreign = mint(
        "another-secret-of-32-characters!",
        &["--publish", "*", "--subscribe", "*"],
    );
    // Expired a minute ago (beyond the 5 s leeway), minted by the library the server uses.
    let expired = server::auth::Auth::mint(
        SECRET,
        &server::auth::Claims {
            exp: server::auth::expiry_in(std::time::Duration::ZERO) - 60,
            publish: vec!["*".into()],
            subscribe: vec!["*".into()],
            ..Default::default()
        },
    )
    .unwrap();
    let publish = |stream: &str| {
        client
            .post(url("/api/notifications"))
            .json(&serde_json::json!({"stream": stream, "title": "t"}))
    };

    // Publishing.
    assert_eq!(status(publish("alerts.disk")).await.0, 401, "no token");
    let (code, reason) = status(publish("alerts.disk").bearer_auth(&expired)).await;
    assert_eq!((code, reason.as_str()), (401, "the token has expired"));
    let (code, reason) = status(publish("alerts.disk").bearer_auth(&foreign)).await;
    assert_eq!(code, 401, "wrongly signed");
    assert!(reason.contains("signature"), "{reason}");
    assert_eq!(
        status(publish("alerts.disk").bearer_auth("not.a.jwt"))
            .await
            .0,
        401
    );
    let (code, reason) = status(publish("alerts.disk").bearer_auth(&narrow)).await;
    assert_eq!(code, 403, "{reason}");
    assert_eq!(
        status(publish("alerts.disk").bearer_auth(&publisher))
            .await
            .0,
        201
    );
    assert_eq!(status(publish("news").bearer_auth(&narrow)).await.0, 201);
    assert_eq!(
        status(client.post(url("/trigger?stream=news"))).await.0,
        401
    );
    // A GET never publishes where tokens are checked (a link would, with the cookie).
    assert_eq!(
        status(client.get(url("/trigger?stream=news")).bearer_auth(&narrow))
            .await
            .0,
        405
    );

    // Reading: private streams need a subscribe match; public ones stay open.
    let history = |stream: &str| client.get(url(&format!("/api/notifications?stream={stream}")));
    let events = |stream: &str| client.get(url(&format!("/events?stream={stream}")));
    assert_eq!(status(history("news")).await.0, 200);
    assert_eq!(status(events("news")).await.0, 200);
    assert_eq!(status(history("alerts.disk")).await.0, 401);
    assert_eq!(status(events("alerts.disk")).await.0, 401);
    assert_eq!(
        status(events("alerts.disk").bearer_auth(&expired)).await.0,
        401
    );
    assert_eq!(
        status(events("alerts.disk").bearer_auth(&publisher))
            .await
            .0,
        403
    );
    assert_eq!(
        status(history("alerts.disk").bearer_auth(&reader)).await.0,
        200
    );
    assert_eq!(
        status(events("alerts.disk").bearer_auth(&reader)).await.0,
        200
    );
    // The query form (for EventSource; the least safe).
    let by_query = client.get(url(&format!(
        "/events?stream=alerts.disk&access_token={reader}"
    )));
    assert_eq!(status(by_query).await.0, 200);
    // The overview hides private streams from those who may not read them.
    let names = |overview: common::StreamsOverview| {
        overview
            .streams
            .into_iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
    };
    let anonymous: common::StreamsOverview = client
        .get(url("/api/streams"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(names(anonymous), ["news"]);
    let ops: common::StreamsOverview = client
        .get(url("/api/streams"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(names(ops), ["alerts.disk", "news"]);

    // The cookie form: POST /api/session sets it, the stream then needs nothing else.
    assert_eq!(status(client.post(url("/api/session"))).await.0, 401);
    assert_eq!(
        status(client.post(url("/api/session")).bearer_auth(&expired))
            .await
            .0,
        401
    );
    let session = client
        .post(url("/api/session"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(session.status().as_u16(), 200);
    let cookie = session.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    assert_eq!(
        status(events("alerts.disk").header("cookie", &pair))
            .await
            .0,
        200
    );
    let cleared = client.delete(url("/api/session")).send().await.unwrap();
    assert_eq!(cleared.status().as_u16(), 204);
    assert!(cleared.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));

    // No token, in any form, reached the log.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let log = server.log();
    assert!(
        log.contains("access_token=REDACTED"),
        "the query form was logged, redacted"
    );
    for token in [&publisher, &narrow, &reader, &foreign, &expired] {
        assert!(!log.contains(token.as_str()), "a token leaked into the log");
    }
    println!(
        "auth: every case answered as expected; {} log lines, no token in them",
        log.lines().count()
    );
}

#[tokio::test]
async fn the_cli_publishes_and_listens_with_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::api_only(
        "127.0.0.1:0",
        &dir.path().join("hub.db"),
        &["--jwt-secret", SECRET, "--private-stream", "ops"],
    )
    .unwrap();
    let token = mint(
        SECRET,
        &["--publish", "ops", "--subscribe", "ops", "--ttl", "5m"],
    );
    let refused = Command::new(BIN)
        .args([
            "publish",
            "--url",
            &server.url,
            "--stream",
            "ops",
            "--title",
            "no token",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("token"), "{said}");
    let published = Command::new(BIN)
        .args([
            "publish",
            "--url",
            &server.url,
            "--stream",
            "ops",
            "--title",
            "with a token",
        ])
        .env("NOTIFY_HUB_TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    let listened = Command::new(BIN)
        .args([
            "listen",
            "--url",
            &server.url,
            "--stream",
            "ops",
            "--last-event-id",
            "0",
        ])
        .args(["--count", "1", "--token", &token])
        .output()
        .unwrap();
    assert!(
        listened.status.success(),
        "{}",
        String::from_utf8_lossy(&listened.stderr)
    );
    assert!(String::from_utf8_lossy(&listened.stdout).contains("with a token"));
}

#[test]
fn a_bad_auth_setting_stops_the_server_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    for (args, expected) in [
        (vec!["--jwt-secret", "short"], "at least 16"),
        (vec!["--private-stream", "ops"], "needs --jwt-secret"),
        (
            vec!["--jwt-public-key", "/nonexistent.pem"],
            "cannot read the JWT public key",
        ),
        (
            vec!["--jwt-secret", SECRET, "--private-stream", "bad name"],
            "not a stream selector",
        ),
    ] {
        let output = Command::new(BIN)
            .args(["serve", "--addr", "127.0.0.1:0", "--db"])
            .arg(dir.path().join("hub.db"))
            .args(&args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn es256_tokens_are_checked_with_the_public_key() {
    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
    let dir = tempfile::tempdir().unwrap();
    let public = keys.join("es256-public.pem");
    let server = ServerProcess::api_only(
        "127.0.0.1:0",
        &dir.path().join("hub.db"),
        &["--jwt-public-key", public.to_str().unwrap()],
    )
    .unwrap();
    let private = std::fs::read(keys.join("es256-private.pem")).unwrap();
    let claims = server::auth::Claims {
        exp: server::auth::expiry_in(std::time::Duration::from_secs(300)),
        publish: vec!["signed".into()],
        ..Default::default()
    };
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(&private).unwrap(),
    )
    .unwrap();
    let client = reqwest::Client::new();
    let publish = || {
        client
            .post(format!("{}/api/notifications", server.url))
            .json(&serde_json::json!({"stream": "signed", "title": "t"}))
    };
    assert_eq!(status(publish().bearer_auth(&token)).await.0, 201);
    // An HS256 token cannot pass for one signed with the key.
    let hs256 = mint(SECRET, &["--publish", "signed"]);
    assert_eq!(status(publish().bearer_auth(&hs256)).await.0, 401);
}

#[test]
fn listening_beyond_loopback_without_auth_logs_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let open = ServerProcess::api_only("0.0.0.0:0", &dir.path().join("hub.db"), &[]).unwrap();
    assert!(open.log().contains("without auth"), "{}", open.log());
    let guarded = ServerProcess::api_only(
        "0.0.0.0:0",
        &dir.path().join("hub2.db"),
        &["--jwt-secret", SECRET],
    )
    .unwrap();
    assert!(!guarded.log().contains("without auth"), "{}", guarded.log());
}

/// Every spelling of the query token that the server accepts (its name percent-encoded,
/// the value percent-encoded, the key repeated), the header and the cookie: each is let in,
/// and at `RUST_LOG=debug`, the most talkative level, none of them puts the token in the log.
#[tokio::test]
async fn no_spelling_of_a_token_reaches_the_log_at_debug() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_logging(
        Path::new(BIN),
        "127.0.0.1:0",
        Path::new("/nonexistent"),
        &dir.path().join("hub.db"),
        &["--jwt-secret", SECRET, "--private-stream", "alerts.*"],
        "debug",
    )
    .unwrap();
    let reader = mint(SECRET, &["--sub", "ops", "--subscribe", "alerts.*"]);
    let encoded = reader.replace('.', "%2E");
    let client = reqwest::Client::new();
    let events = format!("{}/events?stream=alerts.disk", server.url);
    for spelling in [
        format!("access_token={reader}"),
        format!("access%5Ftoken={reader}"),
        format!("access%5ftoken={reader}"),
        format!("%61ccess_token={reader}"),
        format!("%61%63%63%65%73%73%5F%74%6F%6B%65%6E={reader}"),
        format!("access_token={encoded}"),
        format!("access_token=&access_token={reader}"),
    ] {
        let (code, reason) = status(client.get(format!("{events}&{spelling}"))).await;
        assert_eq!(code, 200, "{spelling} is accepted: {reason}");
    }
    assert_eq!(
        status(client.get(&events).bearer_auth(&reader)).await.0,
        200
    );
    assert_eq!(
        status(
            client
                .get(&events)
                .header("authorization", format!("bearer {reader}"))
        )
        .await
        .0,
        200
    );
    let cookie = format!("{}={reader}", server::auth::COOKIE);
    assert_eq!(
        status(client.get(&events).header("cookie", &cookie))
            .await
            .0,
        200
    );
    // A token the server refuses is not echoed either.
    let foreign = mint("another-secret-of-32-characters!", &["--subscribe", "*"]);
    let (code, reason) = status(client.get(format!("{events}&access%5Ftoken={foreign}"))).await;
    assert_eq!(code, 401);
    assert!(!reason.contains(&foreign), "{reason}");

    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let log = server.log();
    assert!(log.contains("DEBUG"), "the log is at debug:\n{log}");
    let signature = |token: &str| token.rsplit('.').next().unwrap().to_owned();
    for secret in [signature(&reader), signature(&encoded), signature(&foreign)] {
        assert!(
            !log.contains(&secret),
            "a token leaked into the log:\n{log}"
        );
    }
    println!(
        "auth: 7 query spellings, the header and the cookie accepted; {} debug log lines, no token in them",
        log.lines().count()
    );
}

/// The notifications of a subscription (skipping heartbeats) until `last` arrives, by
/// stream and title.
async fn read_until(response: reqwest::Response, last: &str) -> Vec<String> {
    use eventsource_stream::Eventsource;
    use futures::StreamExt;
    let mut events = response.bytes_stream().eventsource();
    let mut seen = Vec::new();
    while !seen.iter().any(|s: &String| s.ends_with(last)) {
        let event = tokio::time::timeout(std::time::Duration::from_secs(10), events.next())
            .await
            .unwrap_or_else(|_| panic!("no {last} within 10 s; saw {seen:?}"))
            .unwrap()
            .unwrap();
        if event.event == "message" {
            let n: common::Notification = serde_json::from_str(&event.data).unwrap();
            seen.push(format!("{} {}", n.stream, n.title));
        }
    }
    seen
}

#[tokio::test]
async fn a_pattern_reaches_only_the_private_streams_the_token_may_read_even_ones_created_later() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::api_only(
        "127.0.0.1:0",
        &dir.path().join("hub.db"),
        &["--jwt-secret", SECRET, "--private-stream", "secret.*"],
    )
    .unwrap();
    let url = |path: &str| format!("{}{path}", server.url);
    let client = reqwest::Client::new();
    let publisher = mint(SECRET, &["--publish", "*"]);
    let reader = mint(SECRET, &["--subscribe", "secret.ops"]);
    let publish = |stream: &str, title: &str| {
        client
            .post(url("/api/notifications"))
            .bearer_auth(&publisher)
            .json(&serde_json::json!({"stream": stream, "title": title}))
            .send()
    };
    publish("secret.old", "before").await.unwrap();

    // Named outright without the right: refused, as for one stream.
    let named = || client.get(url("/events?stream=public&stream=secret.ops"));
    assert_eq!(status(named()).await.0, 401, "no token");
    let other = mint(SECRET, &["--subscribe", "secret.hr"]);
    assert_eq!(status(named().bearer_auth(&other)).await.0, 403);

    let anyone = client.get(url("/events?stream=*")).send().await.unwrap();
    let ops = (client.get(url("/events?stream=*")).bearer_auth(&reader))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (anyone.status().as_u16(), ops.status().as_u16()),
        (200, 200)
    );
    // Streams created after both connected: private ones, a public one, then a marker.
    for (stream, title) in [
        ("secret.old", "existing"),
        ("secret.ops", "for ops"),
        ("secret.hr", "for hr"),
        ("news", "public"),
        ("zz", "end"),
    ] {
        assert_eq!(publish(stream, title).await.unwrap().status(), 201);
    }
    assert_eq!(read_until(anyone, "end").await, ["news public", "zz end"]);
    let for_ops = read_until(ops, "end").await;
    assert!(
        for_ops.contains(&"secret.ops for ops".to_owned()),
        "{for_ops:?}"
    );
    assert!(
        !for_ops
            .iter()
            .any(|s| s.starts_with("secret.hr") || s.starts_with("secret.old")),
        "{for_ops:?}"
    );
    // The history of a pattern lists what its connection would get, and no more.
    let listed = |token: Option<&str>| {
        let mut request = client.get(url("/api/notifications?stream=*&stream=news"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let page: common::History = request.send().await.unwrap().json().await.unwrap();
            let mut streams: Vec<String> =
                page.notifications.into_iter().map(|n| n.stream).collect();
            streams.dedup();
            streams
        }
    };
    assert_eq!(listed(None).await, ["news", "zz"]);
    assert_eq!(listed(Some(&reader)).await, ["secret.ops", "news", "zz"]);
    let named = client.get(url("/api/notifications?stream=news&stream=secret.ops"));
    assert_eq!(status(named.bearer_auth(&other)).await.0, 403);
}

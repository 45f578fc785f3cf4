//! Hostile clients at the edges, each attack at the default settings, each printing what it
//! tried and what happened: connections that hold a slot with a byte (HTTP/1, HTTP/2 and
//! TLS), a flood past the open-file limit, a page of another site that writes, a token read
//! past its expiry or before its `nbf`, a session cookie over HTTPS, a GET that publishes
//! with a cookie, `/metrics` naming private streams, a forged `X-Forwarded-For`, IPv6
//! addresses of one block, the security headers of the app, and a restart that must look
//! like a dropped connection to clients that stop on a clean end.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use rustls_pki_types::pem::PemObject as _;
use server::auth::{Audience, Auth, Claims};
use server::config::Config;
use support::https::{certificate, https_server, write};
use support::{config, events, next_event, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The header timeout at the defaults: every connection must bring a request within it.
const HEADER_TIMEOUT: Duration = Duration::from_secs(server::config::defaults::HEADER_TIMEOUT_SECS);

/// Open file descriptors of this process (the in-process server's and the test's).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Opens `count` connections to `addr`, sends `first` on each, and waits for the server to
/// close every one; returns the slowest close, measured from the connect.
async fn held_by(addr: &str, count: usize, first: &'static [u8]) -> Duration {
    let mut waits = Vec::new();
    for _ in 0..count {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let opened = Instant::now();
        socket.write_all(first).await.unwrap();
        waits.push(tokio::spawn(async move {
            let mut sink = [0u8; 1024];
            // The server may answer (HTTP/2 sends its SETTINGS) before it closes.
            loop {
                match tokio::time::timeout(HEADER_TIMEOUT * 3, socket.read(&mut sink)).await {
                    Ok(Ok(0) | Err(_)) => return opened.elapsed(),
                    Ok(Ok(_)) => {}
                    Err(_) => panic!("still open after {:?}", HEADER_TIMEOUT * 3),
                }
            }
        }));
    }
    let mut slowest = Duration::ZERO;
    for wait in waits {
        slowest = slowest.max(wait.await.unwrap());
    }
    slowest
}

/// The first bytes of a TLS ClientHello whose record says 512 bytes follow: half a hello.
const HALF_A_CLIENT_HELLO: &[u8] = &[
    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x5a, 0x5a, 0x5a,
];

/// What an HTTP/2 client sends first, and then nothing.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_a_preface_or_half_a_hello_holds_no_connection_past_the_header_timeout() {
    let plain = TestServer::start(config()).await;
    let dir = tempfile::tempdir().unwrap();
    let (tls, tls_url) = https_server(write(dir.path(), &certificate(false)), config()).await;
    let plain_addr = plain.url.trim_start_matches("http://").to_owned();
    let tls_addr = tls_url.trim_start_matches("https://").to_owned();
    // Let both servers settle (their files, the store) before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = open_fds();
    let (p, preface, hello) = tokio::join!(
        held_by(&plain_addr, 1000, b"P"),
        held_by(&plain_addr, 1000, H2_PREFACE),
        held_by(&tls_addr, 1000, HALF_A_CLIENT_HELLO),
    );
    println!(
        "1,000 connections each: `P` closed within {p:?}, the HTTP/2 preface within \
         {preface:?}, half a ClientHello within {hello:?} (header timeout {HEADER_TIMEOUT:?})"
    );
    let allowed = HEADER_TIMEOUT + Duration::from_secs(2);
    assert!(p <= allowed, "`P` held a connection {p:?}");
    assert!(
        preface <= allowed,
        "the preface held a connection {preface:?}"
    );
    assert!(hello <= allowed, "half a hello held a connection {hello:?}");
    let settled = e2e::eventually("the open fds to return", Duration::from_secs(5), || async {
        Ok((open_fds() <= baseline + 5).then(open_fds))
    })
    .await
    .unwrap();
    println!("open fds: {baseline} before, {settled} after");
    plain.stop().await.unwrap();
    tls.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_over_tls_that_sends_only_its_preface_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(false);
    let (tls, url) = https_server(write(dir.path(), &(cert.clone(), key)), config()).await;
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls_pki_types::CertificateDer::pem_slice_iter(cert.as_bytes()) {
        roots.add(der.unwrap()).unwrap();
    }
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let addr = url.trim_start_matches("https://").to_owned();
    let mut waits = Vec::new();
    for _ in 0..50 {
        let socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let opened = Instant::now();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, socket).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        tls.write_all(H2_PREFACE).await.unwrap();
        waits.push(tokio::spawn(async move {
            let mut sink = [0u8; 1024];
            loop {
                match tokio::time::timeout(HEADER_TIMEOUT * 3, tls.read(&mut sink)).await {
                    Ok(Ok(0) | Err(_)) => return opened.elapsed(),
                    Ok(Ok(_)) => {}
                    Err(_) => panic!("an h2 connection was still open after 30 s"),
                }
            }
        }));
    }
    let mut slowest = Duration::ZERO;
    for wait in waits {
        slowest = slowest.max(wait.await.unwrap());
    }
    println!("50 h2-over-TLS connections that sent only the preface: closed within {slowest:?}");
    assert!(
        slowest <= HEADER_TIMEOUT + Duration::from_secs(2),
        "{slowest:?}"
    );
    tls.stop().await.unwrap();
}

/// The release or debug `server` binary under an open-file limit of `limit`, at its
/// defaults otherwise.
fn server_under_open_file_limit(dir: &Path, limit: u32, args: &[&str]) -> e2e::ServerProcess {
    let wrapper = dir.join("limited-server");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nulimit -n {limit}\nexec '{}' \"$@\"\n",
            env!("CARGO_BIN_EXE_server")
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    e2e::ServerProcess::start(
        &wrapper,
        "127.0.0.1:0",
        Path::new("/nonexistent"),
        &dir.join("hub.db"),
        args,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_past_the_open_file_limit_is_refused_at_accept_and_the_server_recovers() {
    let dir = tempfile::tempdir().unwrap();
    // At the defaults, the cap is the open-file limit less a fiftieth (at least 64): 192.
    let server = server_under_open_file_limit(dir.path(), 256, &[]);
    let cap = server::limits::open_file_room(256);
    let flood = 300;
    let started = Instant::now();
    let mut sockets: Vec<TcpStream> = (0..flood)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Those past the cap are closed at once: a read sees the end (or a reset); those
    // held would block.
    let mut closed_at_once = 0;
    for socket in &mut sockets {
        socket.set_nonblocking(true).unwrap();
        match socket.read(&mut [0u8; 1]) {
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => closed_at_once += 1,
        }
    }
    assert!(
        started.elapsed() < HEADER_TIMEOUT,
        "the count took too long"
    );
    println!(
        "{flood} idle connections under an open-file limit of 256 (cap {cap}): {closed_at_once} \
         closed at accept"
    );
    let refused = flood - cap;
    assert!(
        closed_at_once >= refused,
        "{closed_at_once} of {flood} were closed at once; the cap leaves {refused} out"
    );
    // The held ones go at the header timeout; then the server answers again.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let answered = e2e::eventually(
        "the server to answer after the flood",
        HEADER_TIMEOUT * 2,
        || async {
            Ok(client
                .get(format!("{}/healthz", server.url))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| started.elapsed()))
        },
    )
    .await
    .unwrap();
    println!("the server answered /healthz {answered:?} after the flood began");
    let refusals = support::metric_at(
        &server.url,
        "notify_hub_connections_refused_total{reason=\"open_connections\"}",
    )
    .await
    .unwrap_or(0.0);
    assert!(refusals >= refused as f64, "{refusals} refusals counted");
    let log = server.log();
    assert!(
        !log.contains("accept failed"),
        "the server ran out of files:\n{log}"
    );
    assert!(log.contains(&format!("at most {cap}")), "{log}");
}

/// A page of another site, as its browser would send its requests.
const EVIL: &str = "https://evil.example";

#[tokio::test]
async fn another_site_may_read_but_not_write() {
    let server = TestServer::start(config()).await;
    let client = reqwest::Client::new();
    let preflight = client
        .request(reqwest::Method::OPTIONS, server.at("/api/notifications"))
        .header("origin", EVIL)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    let allowed = preflight
        .headers()
        .get("access-control-allow-origin")
        .cloned();
    println!("preflight of a JSON publish from {EVIL}: allow-origin {allowed:?}");
    assert!(allowed.is_none(), "the browser is told it may publish");

    // What CORS does not stop: a form, sent without asking first.
    for (method, path, site) in [
        ("POST", "/trigger", Some("cross-site")),
        ("POST", "/trigger", None),
        ("GET", "/trigger", None),
        ("POST", "/api/session", None),
    ] {
        let mut request = client
            .request(method.parse().unwrap(), server.at(path))
            .header("origin", EVIL)
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let reason: common::ErrorBody = response.json().await.unwrap();
        println!(
            "{method} {path} from {EVIL} (sec-fetch-site {site:?}): {status} {}",
            reason.error
        );
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    // Reads stay open to every page, as the seeds' pages opened from a file use them.
    let read = client
        .get(server.at("/api/notifications?stream=messages"))
        .header("origin", "null")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    assert!(read.headers().contains_key("access-control-allow-origin"));
    let subscribe = client
        .get(server.at("/events?stream=messages"))
        .header("origin", EVIL)
        .send()
        .await
        .unwrap();
    assert_eq!(subscribe.status(), StatusCode::OK);
    assert!(subscribe
        .headers()
        .contains_key("access-control-allow-origin"));
    // The hub's own page, and clients that are not browsers, write.
    for (origin, site) in [
        (Some(server.url.clone()), None),
        (Some(server.url.clone()), Some("same-origin")),
        (None, None),
    ] {
        let mut request = client.post(server.at("/trigger"));
        if let Some(origin) = &origin {
            request = request.header("origin", origin);
        }
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        assert_eq!(request.send().await.unwrap().status(), StatusCode::CREATED);
    }
    server.stop().await.unwrap();

    // An origin the operator names may write, with CORS to match.
    let named = TestServer::start(Config {
        cors_origins: vec![axum::http::HeaderValue::from_static(EVIL)],
        ..config()
    })
    .await;
    let preflight = client
        .request(reqwest::Method::OPTIONS, named.at("/api/notifications"))
        .header("origin", EVIL)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.headers()["access-control-allow-origin"], EVIL);
    let publish = client
        .post(named.at("/trigger"))
        .header("origin", EVIL)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(publish.status(), StatusCode::CREATED);
    println!("with --cors-origin {EVIL}: its preflight is allowed and its trigger publishes");
    named.stop().await.unwrap();
}

const SECRET: &str = "attack-test-secret-of-32-bytes!!";

fn token(claims: &Claims) -> String {
    Auth::mint(SECRET, claims).unwrap()
}

/// A token that may publish to every stream for `ttl` seconds.
fn writer(ttl: u64) -> String {
    token(&Claims {
        exp: now() + ttl,
        publish: vec!["*".to_owned()],
        ..Claims::default()
    })
}

/// A token that may read the private streams (`alerts.*`) for `ttl` seconds.
fn reader(ttl: u64) -> String {
    token(&Claims {
        exp: now() + ttl,
        subscribe: vec!["alerts.*".to_owned()],
        ..Claims::default()
    })
}

fn now() -> u64 {
    server::auth::expiry_in(Duration::ZERO)
}

fn with_auth(base: Config) -> Config {
    Config {
        jwt_secret: Some(SECRET.to_owned()),
        private_streams: vec!["alerts.*".to_owned()],
        ..base
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_stream_stops_at_its_tokens_expiry_and_says_so() {
    let server = TestServer::start(with_auth(config())).await;
    let writer = writer(3600);
    let reader = reader(2);
    let client = reqwest::Client::new();
    let to = server.at("/api/notifications");
    // A client of its own per publish: a pooled connection left idle for the header
    // timeout is closed by the hub, and a publish sent on it just then would be reset.
    let publish = move |title: &'static str| {
        let (client, writer, url) = (reqwest::Client::new(), writer.clone(), to.clone());
        async move {
            let response = client
                .post(url)
                .bearer_auth(writer)
                .json(&serde_json::json!({"stream": "alerts.disk", "title": title}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::CREATED);
        }
    };
    let opened = Instant::now();
    let response = client
        .get(server.at("/events?stream=alerts.disk&stream=messages"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = response.bytes_stream();
    let mut seen = String::new();
    publish("before expiry").await;
    let late_publisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        publish("after expiry").await;
    });
    // The stream is interrupted after the `token-expired` event: an error, not an end.
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
            Ok(Some(Ok(bytes))) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(Some(Err(_))) => break "interrupted",
            Ok(None) => break "ended cleanly",
            Err(_) => break "still open after 20 s",
        }
    };
    let lasted = opened.elapsed();
    println!("a subscriber with a 2 s token: {ended} after {lasted:?}");
    assert_eq!(ended, "interrupted");
    assert!(seen.contains("before expiry"), "{seen}");
    assert!(seen.contains("event: token-expired"), "{seen}");
    assert!(lasted < Duration::from_secs(2 + server::auth::LEEWAY_SECS + 3));
    late_publisher.await.unwrap();
    assert!(!seen.contains("after expiry"), "{seen}");
    // And it cannot come back with that token.
    let again = client
        .get(server.at("/events?stream=alerts.disk"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    // A stream of public streams only is never cut by a token.
    server.stop().await.unwrap();
}

#[tokio::test]
async fn tokens_are_checked_for_nbf_and_audience() {
    let server = TestServer::start(with_auth(config())).await;
    let client = reqwest::Client::new();
    let read = |token: String| {
        let request = client
            .get(server.at("/api/notifications?stream=alerts.disk"))
            .bearer_auth(token);
        async move { request.send().await.unwrap().status() }
    };
    let rights = Claims {
        exp: now() + 3600,
        subscribe: vec!["alerts.*".to_owned()],
        ..Claims::default()
    };
    let early = token(&Claims {
        nbf: Some(now() + 600),
        ..rights.clone()
    });
    assert_eq!(read(early).await, StatusCode::UNAUTHORIZED);
    // Without --jwt-audience, a token that names an audience is taken.
    let for_someone = token(&Claims {
        aud: Some(Audience::One("hub.example".to_owned())),
        ..rights.clone()
    });
    assert_eq!(read(for_someone.clone()).await, StatusCode::OK);
    server.stop().await.unwrap();

    let server = TestServer::start(Config {
        jwt_audience: Some("hub.example".to_owned()),
        ..with_auth(config())
    })
    .await;
    let read = |token: String| {
        let request = client
            .get(server.at("/api/notifications?stream=alerts.disk"))
            .bearer_auth(token);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(read(for_someone).await, StatusCode::OK);
    let elsewhere = token(&Claims {
        aud: Some(Audience::Many(vec!["other.example".to_owned()])),
        ..rights.clone()
    });
    assert_eq!(read(elsewhere).await, StatusCode::UNAUTHORIZED);
    assert_eq!(read(token(&rights)).await, StatusCode::UNAUTHORIZED);
    println!("nbf in the future: 401; aud checked only against --jwt-audience");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn over_https_the_session_cookie_is_secure_and_host_only() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(false);
    let (server, url) =
        https_server(write(dir.path(), &(cert.clone(), key)), with_auth(config())).await;
    let client = support::https::client(&cert, false);
    let reader = reader(3600);
    let session = client
        .post(format!("{url}/api/session"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), StatusCode::OK);
    let cookie = session.headers()["set-cookie"].to_str().unwrap().to_owned();
    println!(
        "the session cookie over HTTPS: {}",
        cookie.replace(&reader, "…")
    );
    assert!(cookie.starts_with("__Host-notify_hub_token="), "{cookie}");
    assert!(
        cookie.contains("Secure") && cookie.contains("Path=/"),
        "{cookie}"
    );
    // The cookie under its plain name is not taken over HTTPS (a sibling domain could
    // have set it).
    let plain = client
        .get(format!("{url}/api/notifications?stream=alerts.disk"))
        .header("cookie", format!("notify_hub_token={reader}"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::UNAUTHORIZED);
    let host = client
        .get(format!("{url}/api/notifications?stream=alerts.disk"))
        .header("cookie", format!("__Host-notify_hub_token={reader}"))
        .send()
        .await
        .unwrap();
    assert_eq!(host.status(), StatusCode::OK);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_get_never_publishes_on_a_hub_with_tokens() {
    let server = TestServer::start(with_auth(config())).await;
    let writer = writer(3600);
    let client = reqwest::Client::new();
    let with_cookie = client
        .get(server.at("/trigger"))
        .header("cookie", format!("notify_hub_token={writer}"))
        .send()
        .await
        .unwrap();
    println!(
        "GET /trigger with a publisher's session cookie: {}",
        with_cookie.status()
    );
    assert_eq!(with_cookie.status(), StatusCode::METHOD_NOT_ALLOWED);
    let post = client
        .post(server.at("/trigger"))
        .bearer_auth(&writer)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::CREATED);
    server.stop().await.unwrap();
    // The seeds' hub, without tokens, still publishes on GET.
    let open = TestServer::start(config()).await;
    let seed = client.get(open.at("/trigger")).send().await.unwrap();
    assert_eq!(seed.status(), StatusCode::OK);
    open.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_name_no_private_stream_without_the_metrics_token() {
    let server = TestServer::start(with_auth(config())).await;
    let reader = reader(3600);
    let client = reqwest::Client::new();
    let stream = client
        .get(server.at("/events?stream=alerts.secret-project"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    let mut stream = events(stream);
    next_event(&mut stream).await;
    let page = client
        .get(server.at("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let private = page
        .lines()
        .find(|line| line.starts_with("notify_hub_subscribers{stream=\"private\"}"))
        .unwrap_or_default()
        .to_owned();
    println!("/metrics with a private subscriber: `{private}`");
    assert!(
        !page.contains("secret-project"),
        "a private name on /metrics"
    );
    assert!(private.ends_with(" 1"), "{private}");
    server.stop().await.unwrap();
}

/// Opens an event stream as a proxy would forward it, with `X-Forwarded-For: forwarded`.
async fn stream_via_proxy(server: &TestServer, forwarded: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(server.at("/events?stream=messages"))
        .header("x-forwarded-for", forwarded)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_forged_forwarded_for_and_a_block_of_ipv6_addresses_are_one_client() {
    let server = TestServer::start(Config {
        trust_proxy: true,
        max_connections_per_ip: Some(1),
        ..config()
    })
    .await;
    // The proxy appended garbage (or a port): the client is the proxy, not the entry the
    // client wrote before it.
    let proxy = stream_via_proxy(&server, "10.0.0.1, unknown").await;
    assert_eq!(proxy.status(), StatusCode::OK);
    let written = stream_via_proxy(&server, "10.0.0.1").await;
    assert_eq!(
        written.status(),
        StatusCode::OK,
        "10.0.0.1 is a client of its own"
    );
    let again = stream_via_proxy(&server, "10.0.0.9, 127.0.0.1:5000").await;
    println!(
        "X-Forwarded-For `10.0.0.1, unknown` then `10.0.0.9, 127.0.0.1:5000`: the second is the \
         proxy's second stream: {}",
        again.status()
    );
    assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS);
    // One /64: one client.
    let first = stream_via_proxy(&server, "2001:db8:1:2::1").await;
    assert_eq!(first.status(), StatusCode::OK);
    let same_block = stream_via_proxy(&server, "2001:db8:1:2:ffff::7").await;
    assert_eq!(same_block.status(), StatusCode::TOO_MANY_REQUESTS);
    let next_block = stream_via_proxy(&server, "2001:db8:1:3::1").await;
    assert_eq!(next_block.status(), StatusCode::OK);
    println!("2001:db8:1:2::1 and 2001:db8:1:2:ffff::7 share a limit; 2001:db8:1:3::1 does not");
    drop((proxy, written, first, next_block));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_app_is_served_with_its_security_headers() {
    let assets = tempfile::tempdir().unwrap();
    let script = "import init from '/app.js'; init();";
    std::fs::write(
        assets.path().join("index.html"),
        format!("<!doctype html><script type=\"module\">{script}</script>"),
    )
    .unwrap();
    let server = TestServer::start(Config {
        assets: assets.path().to_owned(),
        ..config()
    })
    .await;
    let page = reqwest::Client::new()
        .get(server.at("/"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    let headers = page.headers().clone();
    let policy = headers["content-security-policy"].to_str().unwrap();
    println!("the page's policy: {policy}");
    use base64::Engine as _;
    use sha2::Digest as _;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(script));
    assert!(policy.contains(&format!("'sha256-{hash}'")), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(policy.contains("'wasm-unsafe-eval'"), "{policy}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(page.text().await.unwrap().contains(script));
    let head = reqwest::Client::new()
        .head(server.at("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.headers()["content-security-policy"],
        policy,
        "HEAD and GET differ"
    );
    let api = reqwest::get(server.at("/healthz")).await.unwrap();
    assert_eq!(api.headers()["x-content-type-options"], "nosniff");
    assert_eq!(api.headers()["referrer-policy"], "no-referrer");
    server.stop().await.unwrap();
}

/// Reads `socket` until the connection ends or a chunked body's last chunk came; whether
/// it came, and what was read.
fn ended_cleanly(socket: &mut TcpStream) -> (bool, String) {
    socket
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut text = String::new();
    let mut buffer = [0u8; 4096];
    loop {
        match socket.read(&mut buffer) {
            Ok(0) | Err(_) => return (false, text),
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buffer[..n])),
        }
        if text.ends_with("\r\n0\r\n\r\n") {
            return (true, text);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_interrupts_endless_streams_and_finite_ones_still_end() {
    let server = TestServer::start(config()).await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    let open = |head: &str| {
        let mut socket = TcpStream::connect(&addr).unwrap();
        socket.write_all(head.as_bytes()).unwrap();
        socket
    };
    // The lean path's stream, hyper's (a `Connection: close` goes to hyper), and the clock.
    let mut lean = open("GET /events?stream=messages HTTP/1.1\r\nHost: hub\r\n\r\n");
    let mut hyper =
        open("GET /events?stream=messages HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n");
    let mut finite = open("GET /sse/time?count=2 HTTP/1.1\r\nHost: hub\r\n\r\n");
    let mut library = reqwest::get(server.at("/events?stream=messages"))
        .await
        .unwrap()
        .bytes_stream();
    library.next().await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (finite_clean, _) = tokio::task::spawn_blocking(move || ended_cleanly(&mut finite))
        .await
        .unwrap();
    server.stop().await.unwrap();
    let (lean_clean, lean_text) = tokio::task::spawn_blocking(move || ended_cleanly(&mut lean))
        .await
        .unwrap();
    let (hyper_clean, hyper_text) = tokio::task::spawn_blocking(move || ended_cleanly(&mut hyper))
        .await
        .unwrap();
    println!(
        "on shutdown: the lean stream ended cleanly: {lean_clean}, hyper's: {hyper_clean}; \
         the clock with count=2: {finite_clean}"
    );
    assert!(lean_text.contains("200 OK") && !lean_clean, "{lean_text}");
    assert!(
        hyper_text.contains("200 OK") && !hyper_clean,
        "{hyper_text}"
    );
    assert!(
        finite_clean,
        "a finite clock stream ends with its last chunk"
    );
    // A client library that stops on a clean end (as r3labs/sse does) sees an error, on
    // which it reconnects.
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), library.next()).await {
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) => break "an error",
            Ok(None) => break "a clean end",
            Err(_) => break "nothing",
        }
    };
    println!("reqwest's body on shutdown: {end}");
    assert_eq!(end, "an error");
}

#[tokio::test]
async fn over_http2_a_restart_resets_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(false);
    let (server, url) = https_server(write(dir.path(), &(cert.clone(), key)), config()).await;
    let client = support::https::client(&cert, false);
    let response = client
        .get(format!("{url}/events?stream=messages"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let mut body = response.bytes_stream();
    body.next().await.unwrap().unwrap();
    server.stop().await.unwrap();
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), body.next()).await {
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(err))) => break format!("reset: {err}"),
            Ok(None) => break "ended cleanly".to_owned(),
            Err(_) => break "still open".to_owned(),
        }
    };
    println!("an HTTP/2 stream on shutdown: {end}");
    assert!(end.starts_with("reset"), "{end}");
}

#[tokio::test]
async fn a_stream_of_public_streams_with_a_token_is_not_cut() {
    let server = TestServer::start(with_auth(config())).await;
    let short = reader(1);
    // A pattern that can match no private stream (they are `alerts.*`) reads none either.
    let response = reqwest::Client::new()
        .get(server.at("/events?stream=messages&stream=news.*"))
        .bearer_auth(&short)
        .send()
        .await
        .unwrap();
    let mut stream = events(response);
    next_event(&mut stream).await;
    tokio::time::sleep(Duration::from_secs(1 + server::auth::LEEWAY_SECS + 1)).await;
    let writer = writer(3600);
    let published = reqwest::Client::new()
        .post(server.at("/api/notifications"))
        .bearer_auth(writer)
        .json(&serde_json::json!({"stream": "messages", "title": "still here"}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), StatusCode::CREATED);
    // Several streams: the ids are positions, so the event is read as it is.
    let notification = loop {
        let event = next_event(&mut stream).await;
        if event.event == "message" {
            break serde_json::from_str::<common::Notification>(&event.data).unwrap();
        }
        assert_ne!(event.event, "token-expired", "a public stream was cut");
    };
    assert_eq!(notification.title, "still here");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_whose_peer_stops_answering_is_closed_by_its_pings() {
    // At the defaults: a ping every keep-alive (15 s), answered within the send timeout
    // (30 s). Through a link that freezes half-open (a NAT that forgot the connection), the
    // server's few bytes are still taken by the kernel, so neither TCP's timeout nor a
    // write deadline can tell; only an unanswered ping does.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(false);
    let (server, url) = https_server(write(dir.path(), &(cert.clone(), key)), config()).await;
    let addr = url.trim_start_matches("https://").parse().unwrap();
    let proxy = e2e::fault_proxy::FaultProxy::start(addr).await.unwrap();
    let through = proxy.url().replace("http://", "https://");
    let client = support::https::client(&cert, false);
    let response = client
        .get(format!("{through}/events?stream=frozen"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let mut body = response.bytes_stream();
    body.next().await.unwrap().unwrap();
    // The server's open streams, asked directly, not through the frozen link.
    let direct = support::https::client(&cert, false);
    let open = || async {
        support::metric_with(&direct, &url, "notify_hub_streams_open")
            .await
            .unwrap_or(-1.0)
    };
    assert_eq!(open().await, 1.0);
    proxy.freeze_open();
    let frozen = Instant::now();
    let limit = Duration::from_secs(
        server::config::defaults::KEEP_ALIVE_SECS
            + server::config::defaults::SEND_TIMEOUT_SECS
            + 15,
    );
    while open().await > 0.0 {
        assert!(
            frozen.elapsed() < limit,
            "the server still holds the frozen HTTP/2 stream after {:?}",
            frozen.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "an HTTP/2 stream behind a link frozen half-open was freed {:?} after the freeze",
        frozen.elapsed()
    );
    server.stop().await.unwrap();
}

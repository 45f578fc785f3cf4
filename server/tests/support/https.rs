//! HTTPS for the tests: certificates made at test time with rcgen, a client that trusts
//! one, and a server on HTTPS.

use std::path::Path;

use server::config::Config;
use server::tls::TlsFiles;

use super::TestServer;

/// A certificate for `localhost` and 127.0.0.1 with its key, as PEM, valid now or
/// (`expired`) only in 2020.
pub fn certificate(expired: bool) -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 12, 31);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Writes `cert` and `key` into `dir` (by rename, as certbot replaces them) and names them.
pub fn write(dir: &Path, (cert, key): &(String, String)) -> TlsFiles {
    let files = TlsFiles {
        cert: dir.join("fullchain.pem"),
        key: dir.join("privkey.pem"),
    };
    for (path, pem) in [(&files.cert, cert), (&files.key, key)] {
        let next = path.with_extension("new");
        std::fs::write(&next, pem).unwrap();
        std::fs::rename(&next, path).unwrap();
    }
    files
}

/// A client that trusts `cert` only; over HTTP/1.1 only when `http1`.
pub fn client(cert: &str, http1: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).unwrap());
    if http1 {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

/// A server with `files`, on HTTPS; its `https://127.0.0.1:PORT`.
pub async fn https_server(files: TlsFiles, base: Config) -> (TestServer, String) {
    let server = TestServer::start(Config {
        tls: Some(files),
        ..base
    })
    .await;
    let url = server.url.replace("http://", "https://");
    (server, url)
}

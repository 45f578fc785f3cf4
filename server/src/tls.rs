//! HTTPS: the server's certificate and key, from PEM files, checked at start and read again
//! when the files change (a renewal), so that new connections get the new certificate while
//! the open ones, and their streams, go on.
//!
//! ALPN offers `h2` and `http/1.1`; hyper's automatic builder then serves whichever the
//! client speaks, through the same accept loop, limits and router as plain HTTP. rustls
//! with its defaults: TLS 1.2 and 1.3 only, forward-secret suites only.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context};
use rustls::crypto::ring::default_provider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// How often the certificate and key files are looked at for a change. Two `stat` calls:
/// a watcher of file events would have to follow certbot's symlinks (its `live/` files
/// point into `archive/`, and a renewal changes the links, not the files they named),
/// which a look at the files' modification times and sizes does by itself.
const LOOK_EVERY: Duration = Duration::from_secs(10);

/// Where the certificate and key come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server's certificate, then any intermediates (certbot's `fullchain.pem`).
    pub cert: PathBuf,
    /// PEM: its private key (PKCS#8, PKCS#1 or SEC1; certbot's `privkey.pem`).
    pub key: PathBuf,
}

/// The TLS side of the accept loop: hands each TCP connection to rustls.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
}

impl Tls {
    /// Loads `files` (failing with the reason when they are missing, unreadable, not PEM,
    /// expired, or do not match) and keeps them current until the process ends.
    pub fn start(files: TlsFiles) -> anyhow::Result<Self> {
        let (key, stamp) = load(&files)?;
        let resolver = Arc::new(Current {
            key: RwLock::new(Arc::new(key)),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()
            .context("the TLS provider offers no safe protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        tokio::spawn(keep_current(files, resolver, stamp));
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// The acceptor for one connection's handshake.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

/// The certificate and key handed to each new handshake.
struct Current {
    key: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for Current {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the server's current certificate")
    }
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// What the files looked like when they were read: each one's modification time and size.
type Stamp = [(Option<SystemTime>, u64); 2];

fn stamp(files: &TlsFiles) -> Stamp {
    [&files.cert, &files.key].map(|path| {
        std::fs::metadata(path).map_or((None, 0), |meta| (meta.modified().ok(), meta.len()))
    })
}

/// Reads the files again whenever they change. A pair that does not load (a renewal half
/// written, a key that does not match yet) leaves the current one in place, with a warning,
/// and is tried again at the next look.
async fn keep_current(files: TlsFiles, current: Arc<Current>, mut seen: Stamp) {
    let mut every = tokio::time::interval(LOOK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let now = stamp(&files);
        if now == seen {
            continue;
        }
        match load(&files) {
            Ok((key, loaded)) => {
                *current.key.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
                seen = loaded;
                tracing::info!(
                    "TLS certificate {} loaded again: new connections use it",
                    files.cert.display()
                );
            }
            Err(err) => {
                seen = now;
                tracing::warn!(
                    "the changed TLS files do not load, keeping the current ones: {err:#}"
                );
            }
        }
    }
}

/// Reads and checks the certificate chain and key.
fn load(files: &TlsFiles) -> anyhow::Result<(CertifiedKey, Stamp)> {
    let stamp = stamp(files);
    let cert_pem = read(&files.cert, "certificate")?;
    let key_pem = read(&files.key, "key")?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| anyhow!("{} is not a PEM certificate: {err}", files.cert.display()))?;
    let Some(leaf) = chain.first() else {
        bail!(
            "{} holds no certificate (PEM `BEGIN CERTIFICATE`)",
            files.cert.display()
        );
    };
    check_validity(leaf, &files.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|err| anyhow!("{} holds no private key in PEM: {err}", files.key.display()))?;
    let key = CertifiedKey::from_der(chain, key, &default_provider()).map_err(|err| {
        anyhow!(
            "the key {} does not go with the certificate {}: {err}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    Ok((key, stamp))
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the TLS {what} {}", path.display()))
}

/// Refuses a certificate that is expired or not valid yet: clients would refuse it anyway,
/// each with an error the operator does not see.
fn check_validity(leaf: &CertificateDer<'_>, path: &Path) -> anyhow::Result<()> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|err| anyhow!("{} is not an X.509 certificate: {err}", path.display()))?;
    let validity = cert.validity();
    let now = x509_parser::time::ASN1Time::now();
    if now > validity.not_after {
        bail!(
            "the certificate {} expired on {}",
            path.display(),
            validity.not_after
        );
    }
    if now < validity.not_before {
        bail!(
            "the certificate {} is not valid before {}",
            path.display(),
            validity.not_before
        );
    }
    Ok(())
}

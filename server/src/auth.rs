//! Who may publish to and subscribe to which stream: JWTs, as app backends already mint
//! them, checked with `jsonwebtoken`.
//!
//! With `--jwt-secret` (HS256) and/or `--jwt-public-key` (RS256/ES256), publishing needs a
//! token whose `publish` claim matches the stream, and the streams named by
//! `--private-stream` need a `subscribe` match to be read (live or history); other streams
//! stay public. A claim is a list of patterns: a stream name, or a prefix ending in `*`
//! (`alerts.*`, `*`). No token or a bad one is `401` with `WWW-Authenticate: Bearer`; a
//! good token that does not cover the stream is `403`. Without any key, everything is open.
//!
//! `EventSource` cannot send headers, so a token is taken from, in order: the
//! `Authorization: Bearer` header, the session cookie (set by `POST /api/session`:
//! `notify_hub_token`, or under HTTPS `__Host-notify_hub_token`, which is `Secure` and
//! cannot be set by a sibling domain), or the `access_token` query parameter (the least
//! safe: URLs end up in logs and histories; the server's own traces redact it).
//!
//! A token means what it says: `exp` and `nbf` are checked (with [`LEEWAY_SECS`] of clock
//! skew), `aud` against `--jwt-audience` when one is set (and not at all when none is), and
//! a stream that reads private streams with a token is cut when the token expires
//! ([`Auth::rights_expire`]).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use axum_extra::headers::authorization::Bearer;
use axum_extra::headers::{Authorization, HeaderMapExt};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use common::selector::{matches, Selector};

use crate::error::ApiError;

/// The cookie `POST /api/session` sets over plain HTTP.
pub const COOKIE: &str = "notify_hub_token";
/// The cookie it sets over HTTPS: the `__Host-` prefix makes browsers keep it only when it
/// is `Secure`, for this host and path `/`.
pub const SECURE_COOKIE: &str = "__Host-notify_hub_token";
/// The query parameter a token may come in.
pub const QUERY: &str = common::query::ACCESS_TOKEN;
/// Clock skew allowed between the token's minter and the hub.
pub const LEEWAY_SECS: u64 = 5;

/// What a token says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Claims {
    /// Expiry, seconds since the Unix epoch (required).
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Stream patterns this token may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Private-stream patterns this token may read.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Not valid before, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Who the token is for, checked against `--jwt-audience`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
}

/// A token's `aud`: one name or several (RFC 7519 allows both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The keys tokens are checked with, and which streams are private.
#[derive(Default)]
pub struct Auth {
    keys: Vec<(DecodingKey, Algorithm)>,
    private: Vec<String>,
    /// The `aud` a token must name, when set.
    audience: Option<String>,
    /// The session cookie is `Secure` and named [`SECURE_COOKIE`] (served over HTTPS).
    secure_cookie: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("keys", &self.keys.len())
            .field("private", &self.private)
            .finish()
    }
}

/// A claim or `--private-stream` pattern, checked by the one selector rule
/// ([`common::Selector`]): a stream name, or a prefix ending in `*`.
pub fn check_pattern(pattern: &str) -> Result<String, String> {
    pattern
        .parse::<Selector>()
        .map(|selector| selector.to_string())
        .map_err(|invalid| invalid.0)
}

impl Auth {
    /// Checks with `secret` (HS256) and/or the PEM public key in `public_key` (RSA or EC);
    /// `private` patterns name the streams that need a `subscribe` claim; `audience` is
    /// the `aud` tokens must name; `secure_cookie` when served over HTTPS.
    pub fn new(
        secret: Option<&str>,
        public_key: Option<&Path>,
        private: Vec<String>,
        audience: Option<String>,
        secure_cookie: bool,
    ) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        if let Some(secret) = secret {
            anyhow::ensure!(
                secret.len() >= 16,
                "the JWT secret is {} characters; use at least 16 (32 random bytes is better)",
                secret.len()
            );
            keys.push((
                DecodingKey::from_secret(secret.as_bytes()),
                Algorithm::HS256,
            ));
        }
        if let Some(path) = public_key {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read the JWT public key {}", path.display()))?;
            let key = DecodingKey::from_rsa_pem(&pem)
                .map(|key| (key, Algorithm::RS256))
                .or_else(|_| DecodingKey::from_ec_pem(&pem).map(|key| (key, Algorithm::ES256)))
                .map_err(|_| {
                    anyhow::anyhow!(
                        "{} is not a PEM RSA or EC (P-256) public key",
                        path.display()
                    )
                })?;
            keys.push(key);
        }
        anyhow::ensure!(
            !keys.is_empty() || private.is_empty(),
            "--private-stream needs --jwt-secret or --jwt-public-key: nobody could read them"
        );
        Ok(Self {
            keys,
            private,
            audience,
            secure_cookie,
        })
    }

    /// Whether tokens are checked at all.
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Whether reading `stream` needs a token.
    pub fn is_private(&self, stream: &str) -> bool {
        self.private.iter().any(|p| matches(p, stream))
    }

    /// The claims of a valid `token`, or the `401` that says what is wrong with it.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let mut last = None;
        for (key, algorithm) in &self.keys {
            let mut validation = Validation::new(*algorithm);
            validation.leeway = LEEWAY_SECS;
            validation.validate_nbf = true;
            match &self.audience {
                Some(audience) => {
                    validation.set_audience(&[audience]);
                    validation.set_required_spec_claims(&["exp", "aud"]);
                }
                None => {
                    validation.validate_aud = false;
                    validation.set_required_spec_claims(&["exp"]);
                }
            }
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(err) => last = Some(err),
            }
        }
        let reason = match last.as_ref().map(|e| e.kind()) {
            Some(jsonwebtoken::errors::ErrorKind::ExpiredSignature) => "the token has expired",
            Some(jsonwebtoken::errors::ErrorKind::InvalidSignature) => {
                "the token's signature does not match this server's key"
            }
            Some(jsonwebtoken::errors::ErrorKind::ImmatureSignature) => {
                "the token is not valid yet (its nbf is in the future)"
            }
            Some(jsonwebtoken::errors::ErrorKind::InvalidAudience) => {
                "the token is for another audience (its aud is not this hub's --jwt-audience)"
            }
            Some(jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(claim)) => {
                if claim == "aud" {
                    "the token has no aud claim, and this hub needs one"
                } else {
                    "the token has no exp claim"
                }
            }
            _ => "the token is not a valid JWT for this server",
        };
        Err(unauthorized(reason, true))
    }

    /// May the request's token publish to `stream`? `Ok` also when auth is off.
    pub fn may_publish(&self, parts: &Parts, stream: &str) -> Result<Option<Claims>, ApiError> {
        if !self.enabled() {
            return Ok(None);
        }
        let claims = self.claims(parts)?;
        if claims.publish.iter().any(|p| matches(p, stream)) {
            Ok(Some(claims))
        } else {
            Err(forbidden(format!(
                "this token may not publish to `{stream}`"
            )))
        }
    }

    /// May the request read `stream` (live or its history)? Public streams always.
    pub fn may_subscribe(&self, parts: &Parts, stream: &str) -> Result<(), ApiError> {
        if !self.is_private(stream) {
            return Ok(());
        }
        let claims = self.claims(parts)?;
        if claims.subscribe.iter().any(|p| matches(p, stream)) {
            Ok(())
        } else {
            Err(forbidden(format!(
                "`{stream}` is private and this token may not read it"
            )))
        }
    }

    /// What the request may read through a pattern: every public stream, and the private
    /// ones its token's `subscribe` claim covers until the token expires (none without a
    /// valid token: a pattern reads public streams whatever else the request carries, as
    /// a named public stream does). Kept by the subscription, for the streams that appear
    /// later too.
    pub fn reader(&self, parts: &Parts) -> Reader {
        let claims = (self.token(parts).filter(|_| !self.private.is_empty()))
            .and_then(|token| self.verify(&token).ok());
        Reader {
            private: self.private.clone(),
            expires: claims.as_ref().map_or(0, |claims| claims.exp),
            subscribe: claims.map(|claims| claims.subscribe).unwrap_or_default(),
        }
    }

    /// When the rights a stream of `selection` reads private streams with end: the `exp`
    /// of the request's token (with the leeway it is checked with, seconds since the Unix
    /// epoch) when a selector covers a private stream (a named one, or a pattern that may
    /// match one, now or later); `None` when the stream reads only public streams.
    pub fn rights_expire(&self, parts: &Parts, selection: &common::Selection) -> Option<u64> {
        let private: Vec<Selector> = self.private.iter().filter_map(|p| p.parse().ok()).collect();
        let reads_private = (selection.selectors().iter())
            .any(|selector| private.iter().any(|p| selector.overlaps(p)));
        if !reads_private {
            return None;
        }
        let claims = self.verify(&self.token(parts)?).ok()?;
        (!claims.subscribe.is_empty()).then_some(claims.exp + LEEWAY_SECS)
    }

    /// The claims of the request's token; `401` without one.
    pub fn claims(&self, parts: &Parts) -> Result<Claims, ApiError> {
        let token = self.token(parts).ok_or_else(|| {
            unauthorized(
                "a token is needed: Authorization: Bearer, the session cookie, or ?access_token=",
                false,
            )
        })?;
        self.verify(&token)
    }

    /// Mints a token signed with `secret` (for `server token`).
    pub fn mint(secret: &str, claims: &Claims) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )?)
    }
}

/// Which streams one subscriber may read: see [`Auth::reader`].
#[derive(Clone, Debug)]
pub struct Reader {
    private: Vec<String>,
    subscribe: Vec<String>,
    /// When the token's rights end (its `exp`, seconds since the Unix epoch).
    expires: u64,
}

impl Reader {
    /// Whether `stream` is public, or covered by the token while it is valid.
    pub fn may_read(&self, stream: &str) -> bool {
        !self.private.iter().any(|p| matches(p, stream))
            || (self.subscribe.iter().any(|p| matches(p, stream))
                && expiry_in(Duration::ZERO) <= self.expires + LEEWAY_SECS)
    }
}

impl Auth {
    /// The token a request carries: `Authorization: Bearer`, else the session cookie (the
    /// one this server sets: [`SECURE_COOKIE`] over HTTPS, else [`COOKIE`]), else
    /// `?access_token=`.
    pub fn token(&self, parts: &Parts) -> Option<String> {
        bearer(&parts.headers)
            .or_else(|| cookie(&parts.headers, self.cookie_name()))
            .or_else(|| {
                let query = parts.uri.query()?;
                form_urlencoded_value(query, QUERY)
            })
    }

    /// The session cookie's name on this server.
    fn cookie_name(&self) -> &'static str {
        if self.secure_cookie {
            SECURE_COOKIE
        } else {
            COOKIE
        }
    }

    /// The session cookie holding `token` for `max_age`, or, with `None`, the one that
    /// clears it: `HttpOnly` (no script reads it), `SameSite=Strict` (no other site sends
    /// it), and over HTTPS `Secure` with the `__Host-` prefix.
    pub fn session_cookie(&self, token: Option<&str>, max_age: Duration) -> Cookie<'static> {
        Cookie::build((self.cookie_name(), token.unwrap_or_default().to_owned()))
            .http_only(true)
            .secure(self.secure_cookie)
            .same_site(SameSite::Strict)
            .path("/")
            .max_age(cookie::time::Duration::seconds(
                i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
            ))
            .build()
    }
}

/// The token of an `Authorization: Bearer` header (the scheme in any case, as RFC 7235
/// has it), parsed by `headers` for every caller, the metrics token's included.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let authorization = headers.typed_get::<Authorization<Bearer>>()?;
    Some(authorization.token().to_owned()).filter(|t| !t.is_empty())
}

/// The token of the session cookie called `name`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let jar = CookieJar::from_headers(headers);
    let value = jar.get(name)?.value();
    (!value.is_empty()).then(|| value.to_owned())
}

/// The query's pairs, decoded the one way every reader and the redaction use.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str(query).unwrap_or_default()
}

/// The first non-empty value of `name` in a query string.
fn form_urlencoded_value(query: &str, name: &str) -> Option<String> {
    query_pairs(query)
        .into_iter()
        .find_map(|(key, value)| (key == name && !value.is_empty()).then_some(value))
}

/// `query` with the value of every pair whose key decodes to `access_token` replaced, for
/// logs and traces. Each pair is decoded as [`token`] decodes it, so a spelling the reader
/// accepts (`access%5Ftoken`, a repeated key) is one the redaction catches.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if query_pairs(pair).iter().any(|(k, _)| k == QUERY) => {
                format!("{key}=REDACTED")
            }
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `401` with `WWW-Authenticate: Bearer` (and `error="invalid_token"` for a bad one).
fn unauthorized(reason: &str, invalid: bool) -> ApiError {
    let challenge = if invalid {
        format!("Bearer error=\"invalid_token\", error_description=\"{reason}\"")
    } else {
        "Bearer".to_owned()
    };
    ApiError::new(StatusCode::UNAUTHORIZED, reason).header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer")),
    )
}

fn forbidden(reason: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, reason)
}

/// Seconds since the Unix epoch, `ttl` from now.
pub fn expiry_in(ttl: Duration) -> u64 {
    (SystemTime::now() + ttl)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_names_and_prefixes() {
        assert!(matches("alerts", "alerts"));
        assert!(!matches("alerts", "alerts.disk"));
        assert!(matches("alerts.*", "alerts.disk"));
        assert!(!matches("alerts.*", "alerts"));
        assert!(matches("*", "anything"));
        assert!(check_pattern("alerts.*").is_ok());
        assert!(check_pattern("*").is_ok());
        assert!(check_pattern("bad name*").is_err());
    }

    #[test]
    fn the_access_token_is_redacted() {
        assert_eq!(
            redact_query("stream=a&access_token=eyJ.secret&lastEventId=3"),
            "stream=a&access_token=REDACTED&lastEventId=3"
        );
    }

    #[test]
    fn every_spelling_the_reader_accepts_is_redacted() {
        for query in [
            "access%5Ftoken=eyJ.secret",
            "%61ccess_token=eyJ.secret",
            "access_token=&access_token=eyJ.secret",
            "access_token=eyJ%2Esecret",
        ] {
            let parts = axum::http::Request::get(format!("/events?{query}"))
                .body(())
                .unwrap()
                .into_parts()
                .0;
            assert!(
                Auth::default().token(&parts).is_some(),
                "the reader accepts {query}"
            );
            let redacted = redact_query(query);
            assert!(!redacted.contains("secret"), "{query} -> {redacted}");
        }
    }
}

//! Where the server is and how to call it: same origin in the app, another origin in
//! tests and embeds. HTTP calls go through gloo-net.
//!
//! On a server that checks tokens, the token the user gave (kept in `sessionStorage`, never
//! `localStorage`, so it ends with the tab) goes with every call as `Authorization:
//! Bearer`, and [`Api::open_session`] turns it into the cookie the page's streams carry.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

use common::{paths, ErrorBody, History, NewNotification, Notification};
use gloo_net::http::{Request, RequestBuilder, Response};
use serde::de::DeserializeOwned;

use crate::connection_state::Trouble;
use crate::storage;

/// Where the user's token is kept for the tab's lifetime.
const TOKEN_KEY: &str = "notify-hub:token";

/// A failed call: the HTTP status when the server answered, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub status: Option<u16>,
    pub reason: String,
}

impl Failure {
    /// The server wants a (better) token: `401` or `403`.
    pub fn needs_token(&self) -> bool {
        self.status.map(Trouble::from_status) == Some(Trouble::NotAllowed)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The token the user gave in this tab, if any.
pub fn token() -> Option<String> {
    storage::session_get(TOKEN_KEY).filter(|t| !t.is_empty())
}

/// Keeps `token` for this tab.
pub fn set_token(token: &str) {
    storage::session_set(TOKEN_KEY, token.trim());
}

/// Sessions opened in this tab so far: waiting retries start over when it changes.
static SESSIONS: AtomicU32 = AtomicU32::new(0);

/// How many sessions this tab has opened (see [`Api::open_session`]).
pub fn session_generation() -> u32 {
    SESSIONS.load(Ordering::Relaxed)
}

/// `request` with the tab's token, if there is one.
fn authorized(request: RequestBuilder) -> RequestBuilder {
    match token() {
        Some(token) => request.header("Authorization", &format!("Bearer {token}")),
        None => request,
    }
}

/// `stream=a&stream=alerts.*`: the query that selects `selectors` (names and patterns,
/// whose characters need no escaping in a URL).
pub fn selection_query(selectors: &[String]) -> String {
    let pairs = selectors
        .iter()
        .map(|selector| format!("{}={selector}", common::query::STREAM));
    pairs.collect::<Vec<_>>().join("&")
}

/// The server's base URL, provided as Leptos context by whoever mounts the components.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Api {
    base: String,
}

impl Api {
    /// `base` is `""` for the page's own origin, or e.g. `"http://127.0.0.1:8080"`.
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
        }
    }

    /// The URL of `path_and_query` on the server.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// `url` plus a `lastEventId` query parameter, for a fresh `EventSource` that resumes.
    pub fn resume_url(&self, path_and_query: &str, last_event_id: Option<&str>) -> String {
        let url = self.url(path_and_query);
        match last_event_id {
            None => url,
            Some(id) => {
                let sep = if url.contains('?') { '&' } else { '?' };
                let id = String::from(js_sys::encode_uri_component(id));
                format!("{url}{sep}{}={id}", common::query::LAST_EVENT_ID)
            }
        }
    }
}

impl Api {
    /// The newest `limit` notifications of the streams `selectors` cover, oldest first,
    /// and where a connection to the same selectors resumes.
    pub async fn history(&self, selectors: &[String], limit: usize) -> Result<History, Failure> {
        let url = self.url(&format!(
            "{}?{}&limit={limit}",
            paths::NOTIFICATIONS,
            selection_query(selectors)
        ));
        let response = authorized(Request::get(&url))
            .send()
            .await
            .map_err(connect_error)?;
        answer(response).await
    }

    /// Publishes `new`; the server's reason if it refuses.
    pub async fn publish(&self, new: &NewNotification) -> Result<Notification, Failure> {
        let request = authorized(Request::post(&self.url(paths::NOTIFICATIONS)))
            .json(new)
            .map_err(|e| failure(None, e.to_string()))?;
        answer(request.send().await.map_err(connect_error)?).await
    }

    /// Presses the seed demo's trigger: "Triggered at <server time>" to `stream`.
    pub async fn trigger(&self, stream: &str) -> Result<Notification, Failure> {
        let url = self.url(&format!(
            "{}?{}={stream}",
            paths::TRIGGER,
            common::query::STREAM
        ));
        let response = authorized(Request::post(&url))
            .send()
            .await
            .map_err(connect_error)?;
        answer(response).await
    }
}

impl Api {
    /// Sends the tab's token to `POST /api/session`, which sets the cookie that the page's
    /// streams (an `EventSource` cannot send headers) carry from then on.
    pub async fn open_session(&self) -> Result<(), Failure> {
        let response = authorized(Request::post(&self.url(paths::SESSION)))
            .send()
            .await
            .map_err(connect_error)?;
        if response.ok() {
            SESSIONS.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        Err(refusal(response).await)
    }
}

fn failure(status: Option<u16>, reason: String) -> Failure {
    Failure { status, reason }
}

/// The failure of a request that never got an answer.
fn connect_error(err: gloo_net::Error) -> Failure {
    failure(None, format!("cannot reach the server ({err})"))
}

/// The JSON body of a successful answer, or the server's `{"error"}` reason.
async fn answer<T: DeserializeOwned>(response: Response) -> Result<T, Failure> {
    let status = response.status();
    if response.ok() {
        return response
            .json()
            .await
            .map_err(|e| failure(Some(status), e.to_string()));
    }
    Err(refusal(response).await)
}

/// The server's `{"error"}` reason for a refusal.
async fn refusal(response: Response) -> Failure {
    let status = response.status();
    let reason = match response.json::<ErrorBody>().await {
        Ok(body) => body.error,
        Err(_) => format!("the server answered {status}"),
    };
    failure(Some(status), reason)
}

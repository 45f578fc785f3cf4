//! Where the server is and how to call it: same origin in the app, another origin in
//! tests and embeds. HTTP calls go through gloo-net.

use common::{paths, ErrorBody, History, NewNotification, Notification};
use gloo_net::http::{Request, Response};
use serde::de::DeserializeOwned;

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
                format!("{url}{sep}lastEventId={id}")
            }
        }
    }
}

impl Api {
    /// The newest `limit` notifications of `stream`, oldest first.
    pub async fn history(&self, stream: &str, limit: usize) -> Result<Vec<Notification>, String> {
        let url = self.url(&format!(
            "{}?stream={stream}&limit={limit}",
            paths::NOTIFICATIONS
        ));
        let response = Request::get(&url).send().await.map_err(connect_error)?;
        let history: History = answer(response).await?;
        Ok(history.notifications)
    }

    /// Publishes `new`; the server's reason if it refuses.
    pub async fn publish(&self, new: &NewNotification) -> Result<Notification, String> {
        let request = Request::post(&self.url(paths::NOTIFICATIONS))
            .json(new)
            .map_err(|e| e.to_string())?;
        answer(request.send().await.map_err(connect_error)?).await
    }

    /// Presses the seed demo's trigger: "Triggered at <server time>" to `stream`.
    pub async fn trigger(&self, stream: &str) -> Result<Notification, String> {
        let response = Request::post(&self.url(&format!("{}?stream={stream}", paths::TRIGGER)))
            .send()
            .await
            .map_err(connect_error)?;
        answer(response).await
    }
}

/// The message for a request that never got an answer.
fn connect_error(err: gloo_net::Error) -> String {
    format!("cannot reach the server ({err})")
}

/// The JSON body of a successful answer, or the server's `{"error"}` reason.
async fn answer<T: DeserializeOwned>(response: Response) -> Result<T, String> {
    if response.ok() {
        return response.json().await.map_err(|e| e.to_string());
    }
    let status = response.status();
    match response.json::<ErrorBody>().await {
        Ok(body) => Err(body.error),
        Err(_) => Err(format!("the server answered {status}")),
    }
}

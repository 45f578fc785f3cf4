//! Where the server is: same origin in the app, another origin in tests and embeds.

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

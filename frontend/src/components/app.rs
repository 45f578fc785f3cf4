//! The page: a header and the cards.

use std::sync::Arc;

use common::{is_valid_stream_name, DEFAULT_STREAM};
use leptos::prelude::*;

use crate::components::{NotificationPanel, Now, ServerClock, StreamsCard, TriggerForm};
use leptos_hub::api::Api;
use leptos_hub::notification_feed::use_notification_feed;

/// How often relative times ("2 min ago") are refreshed.
const NOW_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The whole app, talking to the server it was served from. `?stream=NAME` in the page's
/// address shows and publishes to that stream instead of `messages`.
#[component]
pub fn App() -> impl IntoView {
    provide_context(Api::new(""));
    let stream: Arc<str> = page_stream().into();
    let (now, set_now) = signal(js_sys::Date::now());
    if let Ok(handle) =
        set_interval_with_handle(move || set_now.set(js_sys::Date::now()), NOW_EVERY)
    {
        on_cleanup(move || handle.clear());
    }
    provide_context(Now(now));
    let notifications = use_notification_feed(stream.clone());
    view! {
        <header class="top">
            <h1>"notify-hub"</h1>
            <p class="tagline">"Live updates over Server-Sent Events"</p>
        </header>
        <main class="grid">
            <div class="column">
                <ServerClock time=notifications.server_time() state=notifications.state() />
                <TriggerForm stream=stream.clone() />
                <StreamsCard current=stream.to_string() />
            </div>
            <NotificationPanel notifications />
        </main>
    }
}

/// The `stream` named in the page's query string, if it is a valid name.
fn page_stream() -> String {
    web_sys::window()
        .and_then(|w| w.location().search().ok())
        .and_then(|search| web_sys::UrlSearchParams::new_with_str(&search).ok())
        .and_then(|params| params.get(common::query::STREAM))
        .filter(|name| is_valid_stream_name(name))
        .unwrap_or_else(|| DEFAULT_STREAM.to_owned())
}

//! The page: a header and the cards.

use leptos::prelude::*;

use crate::components::{NotificationPanel, Now, ServerClock, StreamsCard, TriggerForm};
use crate::followed::{self, Followed};
use leptos_hub::api::Api;
use leptos_hub::connection_state::{ConnectionState, Trouble};
use leptos_hub::notification_feed::use_notification_feed;

/// How often relative times ("2 min ago") are refreshed.
const NOW_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The whole app, talking to the server it was served from. It follows the streams of
/// [`Followed`] (`?stream=NAME&stream=alerts.*` in the page's address, else the browser's
/// own set, else `messages`) and publishes to the first stream the set names.
#[component]
pub fn App() -> impl IntoView {
    provide_context(Api::new(""));
    let followed = Followed::load();
    provide_context(followed);
    let (now, set_now) = signal(js_sys::Date::now());
    if let Ok(handle) =
        set_interval_with_handle(move || set_now.set(js_sys::Date::now()), NOW_EVERY)
    {
        on_cleanup(move || handle.clear());
    }
    provide_context(Now(now));
    let notifications = use_notification_feed(followed.streams());
    let state = notifications.state();
    let streams_refused =
        Signal::derive(move || state.get() == ConnectionState::Offline(Trouble::NotAllowed));
    let target = Signal::derive(move || {
        followed.streams().with(|set| {
            (set.iter().find(|s| !followed::is_pattern(s)))
                .map_or_else(|| common::DEFAULT_STREAM.to_owned(), Clone::clone)
        })
    });
    view! {
        <header class="top">
            <h1>"notify-hub"</h1>
            <p class="tagline">"Live updates over Server-Sent Events"</p>
        </header>
        <main class="grid">
            <div class="column">
                <ServerClock time=notifications.server_time() state=notifications.state() />
                <TriggerForm stream=target streams_refused />
                <StreamsCard />
            </div>
            <NotificationPanel notifications />
        </main>
    }
}

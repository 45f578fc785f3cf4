//! The page: a header and the cards.

use leptos::prelude::*;

use crate::api::Api;
use crate::components::{Clock, NotificationPanel, Now, TriggerForm};

/// How often relative times ("2 min ago") are refreshed.
const NOW_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The whole app, talking to the server it was served from.
#[component]
pub fn App() -> impl IntoView {
    provide_context(Api::new(""));
    let (now, set_now) = signal(js_sys::Date::now());
    if let Ok(handle) =
        set_interval_with_handle(move || set_now.set(js_sys::Date::now()), NOW_EVERY)
    {
        on_cleanup(move || handle.clear());
    }
    provide_context(Now(now));
    view! {
        <header class="top">
            <h1>"notify-hub"</h1>
            <p class="tagline">"Live updates over Server-Sent Events"</p>
        </header>
        <main class="grid">
            <div class="column">
                <Clock />
                <TriggerForm />
            </div>
            <NotificationPanel />
        </main>
    }
}

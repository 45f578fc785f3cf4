//! The page: a header and the cards.

use leptos::prelude::*;

use crate::api::Api;
use crate::components::Clock;

/// The whole app, talking to the server it was served from.
#[component]
pub fn App() -> impl IntoView {
    provide_context(Api::new(""));
    view! {
        <header class="top">
            <h1>"notify-hub"</h1>
            <p class="tagline">"Live updates over Server-Sent Events"</p>
        </header>
        <main class="grid">
            <Clock />
        </main>
    }
}

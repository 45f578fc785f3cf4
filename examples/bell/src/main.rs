//! The smallest page that shows a hub's notifications live: `messages` and every
//! `alerts.` stream, with an unread count, on the hub that serves the page.
//! `trunk serve examples/bell/index.html` builds it; the test suite builds it and drives it.

use leptos::prelude::*;
use leptos_hub::api::Api;
use leptos_hub::notification_feed::use_notification_feed;

/// A bell with the unread count, and the list: each title with its stream.
#[component]
fn Bell() -> impl IntoView {
    // The hub's address: here the page's own origin.
    provide_context(Api::new(""));
    let feed = use_notification_feed(vec!["messages".to_owned(), "alerts.*".to_owned()]);
    let list = feed.feed();
    view! {
        <p>"🔔 " <span data-testid="unread">{move || list.with(|l| l.unread())}</span></p>
        <p data-testid="state">{move || feed.state().get().kind()}</p>
        <ul>
            <For
                each=move || list.with(|l| l.items().to_vec())
                key=|item| item.notification.id.clone()
                children=|item| {
                    let n = item.notification;
                    view! { <li data-testid="item">{n.stream} ": " {n.title}</li> }
                }
            />
        </ul>
    }
}

fn main() {
    leptos::mount::mount_to_body(Bell);
}

//! The notification panel: a bell with the unread count, the list (history, then live),
//! mark-all-read, a screen-reader announcement per arrival, and opt-in desktop alerts.

use leptos::prelude::*;

use crate::components::{NotificationItem, StatusPill};
use leptos_hub::desktop;
use leptos_hub::notification_feed::NotificationFeed;
use leptos_hub::notification_list::NotificationList;

/// The panel for one stream's feed (see [`leptos_hub::notification_feed::use_notification_feed`]).
#[component]
pub fn NotificationPanel(notifications: NotificationFeed) -> impl IntoView {
    let stream = notifications.stream();
    let feed = notifications.feed();
    let unread = move || feed.with(NotificationList::unread);
    view! {
        <section class="card notifications" aria-labelledby="notifications-title">
            <header class="card-header">
                <h2 id="notifications-title">
                    <svg class="bell" viewBox="0 0 24 24" width="18" height="18" aria-hidden="true">
                        <path
                            fill="currentColor"
                            d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1Z"
                        />
                    </svg>
                    "Notifications"
                    <span class="stream-name" data-testid="stream-name">{stream.to_string()}</span>
                    <span class="badge" data-testid="unread-count" class:hidden=move || unread() == 0>
                        {unread}
                    </span>
                </h2>
                <StatusPill state=notifications.state() testid="notifications-state" />
            </header>
            <div class="toolbar">
                <button
                    type="button"
                    data-testid="mark-read"
                    prop:disabled=move || unread() == 0
                    on:click=move |_| notifications.mark_all_read()
                >
                    "Mark all read"
                </button>
                <desktop::DesktopToggle />
            </div>
            <p class="visually-hidden" aria-live="polite">{move || notifications.announcement().get()}</p>
            <ul class="feed" data-testid="notification-list">
                <For
                    each=move || feed.with(|f| f.items().to_vec())
                    key=|item| (item.notification.id.clone(), item.unread)
                    children=move |item| view! { <NotificationItem item /> }
                />
            </ul>
            <p class="empty" class:hidden=move || feed.with(|f| !f.items().is_empty())>
                "Nothing yet. Press Trigger, or publish with the CLI."
            </p>
        </section>
    }
}

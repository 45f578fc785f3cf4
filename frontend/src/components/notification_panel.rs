//! The notification panel: a bell with the unread count, the streams it follows (each
//! removable, and a field to add one), the list (history, then live), mark-all-read, a
//! screen-reader announcement per arrival, and opt-in desktop alerts.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;

use crate::components::{NotificationItem, StatusPill};
use crate::followed::Followed;
use leptos_hub::desktop;
use leptos_hub::notification_feed::NotificationFeed;
use leptos_hub::notification_list::NotificationList;

/// The panel for a feed (see [`leptos_hub::notification_feed::use_notification_feed`]);
/// the streams it follows can be changed where [`Followed`] is provided.
#[component]
pub fn NotificationPanel(notifications: NotificationFeed) -> impl IntoView {
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
                    <span class="badge" data-testid="unread-count" class:hidden=move || unread() == 0>
                        {unread}
                    </span>
                </h2>
                <StatusPill state=notifications.state() testid="notifications-state" />
            </header>
            <FollowedStreams streams=notifications.streams() />
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
            <ul class="feed" data-testid="notification-list" tabindex="0" aria-label="Notification list">
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

/// The followed streams as chips, each with a button that stops following it, and a field
/// that adds a stream or a pattern (checked as the server checks it).
#[component]
fn FollowedStreams(streams: Signal<Vec<String>>) -> impl IntoView {
    let followed = use_context::<Followed>();
    let (text, error) = (RwSignal::new(String::new()), RwSignal::new(None::<String>));
    let add = move |ev: SubmitEvent| {
        ev.prevent_default();
        let Some(followed) = followed else { return };
        match followed.add(&text.get_untracked()) {
            Ok(()) => {
                text.set(String::new());
                error.set(None);
            }
            Err(reason) => error.set(Some(reason)),
        }
    };
    view! {
        <ul class="chips" data-testid="followed" aria-label="Streams followed">
            <For
                each=move || streams.get()
                key=Clone::clone
                children=move |name| {
                    let label = format!("Stop following {name}");
                    let (gone, shown) = (name.clone(), name.clone());
                    view! {
                        <li class="chip" data-testid="followed-stream" data-stream=name>
                            {shown}
                            {followed.map(|followed| view! {
                                <button
                                    type="button"
                                    aria-label=label
                                    on:click=move |_| followed.remove(&gone)
                                >
                                    "×"
                                </button>
                            })}
                        </li>
                    }
                }
            />
        </ul>
        {followed.map(|_| view! {
            <form class="follow" on:submit=add>
                <input
                    type="text"
                    placeholder="Follow a stream, or alerts.*"
                    aria-label="Stream or pattern to follow"
                    data-testid="follow-input"
                    bind:value=text
                />
                <button type="submit" data-testid="follow-button">"Follow"</button>
                <p class="error" role="alert" data-testid="follow-error">{move || error.get()}</p>
            </form>
        })}
    }
}

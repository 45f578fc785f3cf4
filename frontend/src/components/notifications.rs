//! The notification panel: a bell with the unread count, the list (history, then live),
//! mark-all-read, a screen-reader announcement per arrival, and opt-in desktop alerts.

use std::sync::Arc;
use std::time::Duration;

use common::{events, paths, Notification, DEFAULT_STREAM};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::Api;
use crate::components::StatusPill;
use crate::feed::{Feed, FeedItem};
use crate::sse::{ConnectionState, SseMessage, Subscription};
use crate::{desktop, storage};

/// How many notifications the list keeps.
const CAP: usize = 100;
/// How many stored notifications are loaded on start and after a reset.
const HISTORY: usize = 50;

/// Where the id of the last notification this browser received is remembered.
fn last_seen_key(stream: &str) -> String {
    format!("notify-hub:last-event-id:{stream}")
}

/// The panel for one stream (default `messages`).
#[component]
pub fn NotificationPanel(
    #[prop(into, default = DEFAULT_STREAM.into())] stream: Arc<str>,
) -> impl IntoView {
    let api = use_context::<Api>().unwrap_or_default();
    let feed = RwSignal::new(Feed::new(CAP));
    let announcement = RwSignal::new(String::new());
    let state = RwSignal::new(ConnectionState::Connecting);
    let last_seen = storage::get(&last_seen_key(&stream));

    // History first, then the live stream from the newest entry of that history, so that
    // everything that arrives live is newer than everything listed. What this browser saw
    // last (remembered across reloads) decides which of those are unread.
    let (ready, set_ready) = signal(None::<String>);
    {
        let (api, stream) = (api.clone(), stream.clone());
        spawn_local(async move {
            let history = load_history(&api, &stream).await;
            let newest = history.last().map(|n| n.id.clone());
            let unread_after = last_seen.clone();
            if feed
                .try_update(|f| f.load_history(history, unread_after.as_deref()))
                .is_some()
            {
                // "0" when nothing is stored yet: replay whatever comes before we subscribe.
                set_ready.try_set(Some(newest.or(last_seen).unwrap_or_else(|| "0".into())));
            }
        });
    }
    let live = {
        let stream = stream.clone();
        move || {
            ready.get().map(|resume| {
                let (api, stream) = (api.clone(), stream.clone());
                view! { <LiveFeed stream resume feed announcement state api /> }
            })
        }
    };

    let unread = move || feed.with(Feed::unread);
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
                <StatusPill state=state testid="notifications-state" />
            </header>
            {live}
            <div class="toolbar">
                <button
                    type="button"
                    data-testid="mark-read"
                    prop:disabled=move || unread() == 0
                    on:click=move |_| feed.update(Feed::mark_all_read)
                >
                    "Mark all read"
                </button>
                <desktop::DesktopToggle />
            </div>
            <p class="visually-hidden" aria-live="polite">{move || announcement.get()}</p>
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

/// The live connection of a panel; renders nothing, feeds the panel's signals.
#[component]
fn LiveFeed(
    stream: Arc<str>,
    resume: String,
    feed: RwSignal<Feed>,
    announcement: RwSignal<String>,
    state: RwSignal<ConnectionState>,
    api: Api,
) -> impl IntoView {
    let url_api = api.clone();
    let path = format!("{}?stream={stream}", paths::EVENTS);
    let connection = Subscription::new(move |last| url_api.resume_url(&path, last))
        .events(&["message", events::RESET])
        .resume_from(Some(resume))
        .connect(move |message: SseMessage| match message.event.as_str() {
            "message" => {
                let Ok(notification) = serde_json::from_str::<Notification>(&message.data) else {
                    return;
                };
                storage::set(&last_seen_key(&stream), &notification.id);
                // Announce only what is new to the list, not replayed duplicates.
                if feed.try_update(|f| f.push(notification.clone())) == Some(true) {
                    announcement.set(format!("New notification: {}", notification.title));
                    desktop::alert(&notification);
                }
            }
            _ => {
                // The server no longer has everything we missed: reload what it has, and
                // go on from the id the reset carries.
                storage::set(&last_seen_key(&stream), &message.id);
                let (api, stream) = (api.clone(), stream.clone());
                spawn_local(async move {
                    let history = load_history(&api, &stream).await;
                    feed.try_update(|f| f.reload(history));
                });
            }
        });
    Effect::new(move |_| state.set(connection.state.get()));
}

/// The stream's newest stored notifications, retrying (with a growing pause) until the
/// server answers: starting without them would replay the whole stream as new.
async fn load_history(api: &Api, stream: &str) -> Vec<Notification> {
    let mut pause = Duration::from_millis(500);
    loop {
        match api.history(stream, HISTORY).await {
            Ok(history) => return history,
            Err(reason) => {
                leptos::logging::warn!("history of {stream}: {reason}; retrying in {pause:?}");
                gloo_timers::future::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// One notification: level colour, title, body, and how long ago it came.
#[component]
fn NotificationItem(item: FeedItem) -> impl IntoView {
    let n = item.notification;
    let created = js_sys::Date::parse(&n.created_at);
    let now = use_context::<Now>().map(|now| now.0);
    let ago = move || relative_time(now.map_or_else(js_sys::Date::now, |now| now.get()) - created);
    view! {
        <li
            class=format!("item level-{}", n.level.as_str())
            class:unread=item.unread
            data-testid="notification-item"
            data-id=n.id.clone()
        >
            <div class="item-head">
                <span class="item-title">{n.title}</span>
                <time datetime=n.created_at.clone() title=n.created_at>{ago}</time>
            </div>
            {(!n.body.is_empty()).then(|| view! { <p class="item-body">{n.body}</p> })}
        </li>
    }
}

/// The current time, refreshed now and then, for relative times ("2 min ago").
#[derive(Clone, Copy)]
pub struct Now(pub ReadSignal<f64>);

/// "just now", "12 s ago", "5 min ago", "3 h ago", "2 d ago".
fn relative_time(ms: f64) -> String {
    let s = (ms / 1000.0).max(0.0);
    match s {
        s if s < 5.0 => "just now".into(),
        s if s < 60.0 => format!("{s:.0} s ago"),
        s if s < 3600.0 => format!("{:.0} min ago", (s / 60.0).floor()),
        s if s < 86_400.0 => format!("{:.0} h ago", (s / 3600.0).floor()),
        s => format!("{:.0} d ago", (s / 86_400.0).floor()),
    }
}

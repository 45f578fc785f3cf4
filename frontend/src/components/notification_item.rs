//! One notification in the list: level colour, title, its stream, body, and how long ago
//! it came.

use leptos::prelude::*;

use leptos_hub::notification_list::ListedNotification;

/// The current time, refreshed now and then, for relative times ("2 min ago").
#[derive(Clone, Copy)]
pub struct Now(pub ReadSignal<f64>);

/// A list entry for `item`; reads [`Now`] from context to keep its age current.
#[component]
pub fn NotificationItem(item: ListedNotification) -> impl IntoView {
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
                <span class="item-stream" data-testid="item-stream">{n.stream}</span>
                <time datetime=n.created_at.clone() title=n.created_at>{ago}</time>
            </div>
            {(!n.body.is_empty()).then(|| view! { <p class="item-body">{n.body}</p> })}
        </li>
    }
}

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

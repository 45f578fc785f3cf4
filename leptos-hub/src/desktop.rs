//! Opt-in desktop alerts (the browser's Notification API) for notifications that arrive
//! while the tab is hidden. Off until the user turns them on and grants permission.

use common::Notification;
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen_futures::JsFuture;
use web_sys::NotificationPermission;

use crate::storage;

const KEY: &str = "notify-hub:desktop-alerts";

fn supported() -> bool {
    web_sys::window()
        .is_some_and(|w| js_sys::Reflect::has(&w, &"Notification".into()).unwrap_or(false))
}

/// Whether alerts are on and allowed.
fn enabled() -> bool {
    supported()
        && storage::get(KEY).as_deref() == Some("on")
        && web_sys::Notification::permission() == NotificationPermission::Granted
}

/// Shows `notification` on the desktop if alerts are on and the page is not visible.
pub fn alert(notification: &Notification) {
    let hidden = web_sys::window()
        .and_then(|w| w.document())
        .is_some_and(|d| d.hidden());
    if !hidden || !enabled() {
        return;
    }
    let options = web_sys::NotificationOptions::new();
    options.set_body(&notification.body);
    options.set_tag(&notification.id);
    let _ = web_sys::Notification::new_with_options(&notification.title, &options);
}

/// The button that turns desktop alerts on (asking for permission) and off.
#[component]
pub fn DesktopToggle() -> impl IntoView {
    let on = RwSignal::new(enabled());
    let toggle = move |_| {
        if on.get_untracked() {
            storage::set(KEY, "off");
            on.set(false);
            return;
        }
        spawn_local(async move {
            let answer = match web_sys::Notification::request_permission() {
                Ok(promise) => JsFuture::from(promise)
                    .await
                    .ok()
                    .and_then(|v| v.as_string()),
                Err(_) => None,
            };
            let granted = answer.as_deref() == Some("granted");
            if granted {
                storage::set(KEY, "on");
            }
            on.set(granted);
        });
    };
    view! {
        <button
            type="button"
            class="secondary"
            hidden=!supported()
            aria-pressed=move || on.get().to_string()
            on:click=toggle
        >
            {move || if on.get() { "Desktop alerts: on" } else { "Desktop alerts: off" }}
        </button>
    }
}

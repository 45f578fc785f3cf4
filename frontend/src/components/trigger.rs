//! The trigger form: publish a notification (or the seed's default one) with one click.

use std::sync::Arc;

use common::{Level, NewNotification, DEFAULT_STREAM, MAX_BODY_CHARS, MAX_TITLE_CHARS};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::Api;

/// Title, optional body and level, and a Trigger button, publishing to `stream`. An empty
/// form sends the seed's default notification ("Triggered at <time>"). Errors from the
/// server are shown under the form.
#[component]
pub fn TriggerForm(
    #[prop(into, default = DEFAULT_STREAM.into())] stream: Arc<str>,
) -> impl IntoView {
    let api = use_context::<Api>().unwrap_or_default();
    let title = RwSignal::new(String::new());
    let body = RwSignal::new(String::new());
    let level = RwSignal::new(Level::Info);
    let sending = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);

    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        if sending.get_untracked() {
            return;
        }
        sending.set(true);
        error.set(None);
        let (api, stream) = (api.clone(), stream.clone());
        let (t, b, l) = (
            title.get_untracked(),
            body.get_untracked(),
            level.get_untracked(),
        );
        spawn_local(async move {
            let empty = t.trim().is_empty() && b.is_empty();
            let result = if empty && *stream == *DEFAULT_STREAM {
                api.trigger().await
            } else {
                let title = if empty {
                    format!(
                        "Triggered at {}",
                        String::from(js_sys::Date::new_0().to_iso_string())
                    )
                } else {
                    t
                };
                let new = NewNotification {
                    stream: Some(stream.to_string()),
                    title,
                    body: (!b.is_empty()).then_some(b),
                    level: Some(l),
                };
                api.publish(&new).await
            };
            match result {
                Ok(_) => {
                    title.set(String::new());
                    body.set(String::new());
                }
                Err(reason) => error.set(Some(reason)),
            }
            sending.set(false);
        });
    };

    view! {
        <section class="card trigger" aria-labelledby="trigger-title">
            <header class="card-header">
                <h2 id="trigger-title">"Send a notification"</h2>
            </header>
            <form on:submit=submit>
                <label>
                    "Title"
                    <input
                        type="text"
                        placeholder="Triggered at <server time>"
                        maxlength=MAX_TITLE_CHARS
                        data-testid="trigger-title"
                        bind:value=title
                    />
                </label>
                <label>
                    <span>"Body " <span class="muted">"(optional)"</span></span>
                    <textarea rows="3" maxlength=MAX_BODY_CHARS data-testid="trigger-body" bind:value=body></textarea>
                </label>
                <label>
                    "Level"
                    <select
                        data-testid="trigger-level"
                        on:change=move |ev| {
                            if let Ok(l) = event_target_value(&ev).parse() {
                                level.set(l);
                            }
                        }
                    >
                        {[Level::Info, Level::Success, Level::Warning, Level::Error]
                            .map(|l| view! { <option value=l.as_str()>{l.as_str()}</option> })}
                    </select>
                </label>
                <button type="submit" class="primary" data-testid="trigger-button" prop:disabled=sending>
                    {move || if sending.get() { "Sending…" } else { "Trigger" }}
                </button>
                <p class="error" role="alert" data-testid="trigger-error">{move || error.get()}</p>
            </form>
        </section>
    }
}

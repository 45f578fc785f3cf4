//! The trigger form: publish a notification (or the seed's default one) with one click.

use std::sync::Arc;

use common::validate::{MAX_BODY_CHARS, MAX_TITLE_CHARS};
use common::{Draft, Level, NewNotification, DEFAULT_STREAM};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, Api};

/// Title, optional body and level, and a Trigger button, publishing to `stream`. An empty
/// form asks the server for the seed's default notification ("Triggered at <server
/// time>"). The form is checked with the server's own rules before it is sent; what the
/// server still refuses is shown under the form. When the server wants a token (`401`,
/// `403`), a token field appears; the token is kept for the tab (`sessionStorage`), opens a
/// session (the cookie private streams need) and the publish is sent again with it.
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
    let needs_token = RwSignal::new(false);
    let token = RwSignal::new(String::new());

    let send = move || {
        if sending.get_untracked() {
            return;
        }
        error.set(None);
        let new = NewNotification {
            stream: Some(stream.to_string()),
            title: title.get_untracked(),
            body: Some(body.get_untracked()).filter(|b| !b.is_empty()),
            level: Some(level.get_untracked()),
        };
        let empty = new.title.trim().is_empty() && new.body.is_none();
        if let (false, Err(invalid)) = (empty, Draft::try_from(new.clone())) {
            error.set(Some(invalid.0));
            return;
        }
        sending.set(true);
        let api = api.clone();
        spawn_local(async move {
            let result = if empty {
                api.trigger(new.stream.as_deref().unwrap_or(DEFAULT_STREAM))
                    .await
            } else {
                api.publish(&new).await
            };
            match result {
                Ok(_) => {
                    title.set(String::new());
                    body.set(String::new());
                    needs_token.set(false);
                }
                Err(failure) => {
                    needs_token.set(failure.needs_token());
                    error.set(Some(failure.reason));
                }
            }
            sending.set(false);
        });
    };
    let send_again = send.clone();
    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        send();
    };
    let use_token = move |ev: SubmitEvent| {
        let send = send_again.clone();
        ev.prevent_default();
        api::set_token(&token.get_untracked());
        token.set(String::new());
        let session = use_context::<Api>().unwrap_or_default();
        spawn_local(async move {
            // The cookie lets the page's streams read private streams; a failure here
            // shows when the publish is sent again.
            let _ = session.open_session().await;
            send();
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
                <LevelSelect level />
                <button type="submit" class="primary" data-testid="trigger-button" prop:disabled=sending>
                    {move || if sending.get() { "Sending…" } else { "Trigger" }}
                </button>
                <p class="error" role="alert" data-testid="trigger-error">{move || error.get()}</p>
            </form>
            <Show when=move || needs_token.get()>
                <form class="token" on:submit=use_token.clone()>
                    <label>
                        "Token"
                        <input
                            type="password"
                            autocomplete="off"
                            placeholder="paste the token you were given"
                            data-testid="token-input"
                            bind:value=token
                        />
                    </label>
                    <button type="submit" data-testid="token-save">"Use token and send again"</button>
                    <p class="muted">"Kept for this tab only."</p>
                </form>
            </Show>
        </section>
    }
}

/// The level picker, writing the chosen level into `level`.
#[component]
fn LevelSelect(level: RwSignal<Level>) -> impl IntoView {
    view! {
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
    }
}

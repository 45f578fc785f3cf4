//! The trigger form: publish a notification (or the seed's default one) with one click.

use common::validate::{MAX_BODY_CHARS, MAX_TITLE_CHARS};
use common::{Draft, Level, NewNotification, DEFAULT_STREAM};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;

use leptos_hub::api::{self, Api};

/// Title, optional body and level, and a Trigger button, publishing to `stream`. An empty
/// form asks the server for the seed's default notification ("Triggered at <server
/// time>"). The form is checked with the server's own rules before it is sent; what the
/// server still refuses is shown under the form. When the server wants a token (`401`,
/// `403`), a [`TokenForm`] appears, and the publish is sent again with the token. It also
/// appears while `streams_refused` (the page's streams need a token, or theirs expired:
/// the server said `token-expired`, then `401`), and a new token reconnects them.
#[component]
pub fn TriggerForm(
    #[prop(into, default = DEFAULT_STREAM.to_owned().into())] stream: Signal<String>,
    #[prop(into, default = false.into())] streams_refused: Signal<bool>,
) -> impl IntoView {
    let api = use_context::<Api>().unwrap_or_default();
    let fields = Fields::default();
    let status = Status::default();
    let publish = Callback::new(move |()| send(&api, &stream.get_untracked(), fields, status));
    // After a new token: the refused publish again, if one was.
    let retry = Callback::new(move |()| {
        if status.needs_token.get_untracked() {
            publish.run(());
        }
    });
    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        publish.run(());
    };

    view! {
        <section class="card trigger" aria-labelledby="trigger-title">
            <header class="card-header">
                <h2 id="trigger-title">
                    "Send a notification"
                    <span class="stream-name" data-testid="trigger-stream">{stream}</span>
                </h2>
            </header>
            <form on:submit=submit>
                <label>
                    "Title"
                    <input
                        type="text"
                        placeholder="Triggered at <server time>"
                        maxlength=MAX_TITLE_CHARS
                        data-testid="trigger-title"
                        bind:value=fields.title
                    />
                </label>
                <label>
                    <span>"Body " <span class="muted">"(optional)"</span></span>
                    <textarea rows="3" maxlength=MAX_BODY_CHARS data-testid="trigger-body" bind:value=fields.body></textarea>
                </label>
                <LevelSelect level=fields.level />
                <button type="submit" class="primary" data-testid="trigger-button" prop:disabled=status.sending>
                    {move || if status.sending.get() { "Sending…" } else { "Trigger" }}
                </button>
                <p class="error" role="alert" data-testid="trigger-error">{move || status.error.get()}</p>
            </form>
            <Show when=move || status.needs_token.get() || streams_refused.get()>
                <TokenForm then=retry publishing=status.needs_token />
            </Show>
        </section>
    }
}

/// What the form holds.
#[derive(Clone, Copy)]
struct Fields {
    title: RwSignal<String>,
    body: RwSignal<String>,
    level: RwSignal<Level>,
}

impl Default for Fields {
    fn default() -> Self {
        Self {
            title: RwSignal::new(String::new()),
            body: RwSignal::new(String::new()),
            level: RwSignal::new(Level::Info),
        }
    }
}

/// How the last send went.
#[derive(Clone, Copy)]
struct Status {
    sending: RwSignal<bool>,
    /// Why the form or the server refused it.
    error: RwSignal<Option<String>>,
    /// Whether the server asked for a token.
    needs_token: RwSignal<bool>,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            sending: RwSignal::new(false),
            error: RwSignal::new(None),
            needs_token: RwSignal::new(false),
        }
    }
}

/// Publishes what `fields` hold to `stream` (an empty form presses the seed's trigger),
/// unless a send is under way or the publishing rules refuse it; `status` says how it went,
/// and a published form is cleared.
fn send(api: &Api, stream: &str, fields: Fields, status: Status) {
    if status.sending.get_untracked() {
        return;
    }
    status.error.set(None);
    let new = NewNotification {
        stream: Some(stream.to_owned()),
        title: fields.title.get_untracked(),
        body: Some(fields.body.get_untracked()).filter(|b| !b.is_empty()),
        level: Some(fields.level.get_untracked()),
    };
    let empty = new.title.trim().is_empty() && new.body.is_none();
    if let (false, Err(invalid)) = (empty, Draft::try_from(new.clone())) {
        status.error.set(Some(invalid.0));
        return;
    }
    status.sending.set(true);
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
                fields.title.set(String::new());
                fields.body.set(String::new());
                status.needs_token.set(false);
            }
            Err(failure) => {
                status.needs_token.set(failure.needs_token());
                status.error.set(Some(failure.reason));
            }
        }
        status.sending.set(false);
    });
}

/// The token field shown when the server wants one. The token is kept for the tab
/// (`sessionStorage`) and opens a session (the cookie private streams need, and on which
/// they reconnect); then `then` runs (the publish, sent again, while `publishing`).
#[component]
fn TokenForm(then: Callback<()>, publishing: RwSignal<bool>) -> impl IntoView {
    let api = use_context::<Api>().unwrap_or_default();
    let token = RwSignal::new(String::new());
    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        api::set_token(&token.get_untracked());
        token.set(String::new());
        let api = api.clone();
        spawn_local(async move {
            // A failure here shows when the publish is sent again.
            let _ = api.open_session().await;
            then.run(());
        });
    };
    view! {
        <form class="token" on:submit=submit>
            <Show when=move || !publishing.get()>
                <p role="status">"The streams this page follows need a token, or theirs has expired."</p>
            </Show>
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
            <button type="submit" data-testid="token-save">
                {move || if publishing.get() { "Use token and send again" } else { "Use token" }}
            </button>
            <p class="muted">"Kept for this tab only."</p>
        </form>
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

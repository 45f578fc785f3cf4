//! The live server clock: the time from `/sse/time`, and how far the local clock is off.

use std::time::Duration;

use common::{events, paths};
use leptos::prelude::*;

use crate::api::Api;
use crate::components::StatusPill;
use crate::event_source::{SseMessage, Subscription};

/// The clock ticks every second: three seconds without a tick means a dead connection.
const SILENCE_LIMIT: Duration = Duration::from_secs(3);

/// A card with the server time, updated on every `time` event, the drift of the local
/// clock from it, and the state of the connection.
#[component]
pub fn ServerClock() -> impl IntoView {
    let api = use_context::<Api>().unwrap_or_default();
    let (server_time, set_server_time) = signal(None::<String>);
    let (drift_ms, set_drift_ms) = signal(None::<f64>);
    let connection = Subscription::new(move |last| api.resume_url(paths::SSE_TIME, last))
        .events(&[events::TIME])
        .silence_limit(SILENCE_LIMIT)
        .connect(move |message: SseMessage| {
            let server_ms = js_sys::Date::parse(&message.data);
            if server_ms.is_finite() {
                set_drift_ms.set(Some(js_sys::Date::now() - server_ms));
            }
            set_server_time.set(Some(message.data));
        });

    view! {
        <section class="card clock" aria-labelledby="clock-title">
            <header class="card-header">
                <h2 id="clock-title">"Server clock"</h2>
                <StatusPill state=connection.state testid="clock-state" />
            </header>
            <p class="time" data-testid="server-time">
                {move || server_time.with(|t| t.as_deref().map_or_else(|| "--:--:--".to_owned(), local_time))}
            </p>
            <p class="raw" data-testid="server-time-raw">
                {move || server_time.get().unwrap_or_else(|| "waiting for the first tick…".into())}
            </p>
            <p class="drift" data-testid="drift">{move || drift_ms.get().map(describe_drift)}</p>
        </section>
    }
}

/// The time of an RFC 3339 instant in the user's time zone, to the second.
fn local_time(rfc3339: &str) -> String {
    let date = js_sys::Date::new(&rfc3339.into());
    String::from(date.to_locale_time_string("default"))
}

/// Words for the difference between the local clock and the server's (network delay included).
fn describe_drift(ms: f64) -> String {
    let amount = if ms.abs() < 1000.0 {
        format!("{:.0} ms", ms.abs())
    } else {
        format!("{:.1} s", ms.abs() / 1000.0)
    };
    if ms >= 0.0 {
        format!("Local clock is {amount} ahead of the server")
    } else {
        format!("Local clock is {amount} behind the server")
    }
}

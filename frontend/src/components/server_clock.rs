//! The live server clock: the time the server ticks on the page's connection, and how far
//! the local clock is off.

use leptos::prelude::*;

use crate::components::StatusPill;
use leptos_hub::connection_state::ConnectionState;

/// A card with the server time `time` (RFC 3339, from the ticks of the page's connection),
/// the drift of the local clock from it, and the connection's `state`.
#[component]
pub fn ServerClock(
    #[prop(into)] time: Signal<Option<String>>,
    #[prop(into)] state: Signal<ConnectionState>,
) -> impl IntoView {
    // Measured when a tick arrives, so network delay counts, as it should.
    let drift_ms = Memo::new(move |_| {
        let server_ms = time.with(|t| t.as_deref().map(js_sys::Date::parse))?;
        server_ms
            .is_finite()
            .then(|| js_sys::Date::now() - server_ms)
    });
    view! {
        <section class="card clock" aria-labelledby="clock-title">
            <header class="card-header">
                <h2 id="clock-title">"Server clock"</h2>
                <StatusPill state testid="clock-state" />
            </header>
            <p class="time" data-testid="server-time">
                {move || time.with(|t| t.as_deref().map_or_else(|| "--:--:--".to_owned(), local_time))}
            </p>
            <p class="raw" data-testid="server-time-raw">
                {move || time.get().unwrap_or_else(|| "waiting for the first tick…".into())}
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

//! The status pill: a connection's state, in words and colour.

use leptos::prelude::*;

use crate::sse::ConnectionState;

/// Shows `state` as a coloured pill; screen readers hear changes.
#[component]
pub fn StatusPill(#[prop(into)] state: Signal<ConnectionState>) -> impl IntoView {
    view! {
        <span
            class=move || format!("pill pill-{}", state.get().label())
            role="status"
            data-testid="connection-state"
        >
            <span class="dot" aria-hidden="true"></span>
            {move || state.get().label()}
        </span>
    }
}

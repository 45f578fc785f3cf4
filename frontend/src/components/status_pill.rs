//! The status pill: a connection's state, in words and colour.

use leptos::prelude::*;

use leptos_hub::connection_state::ConnectionState;

/// Shows `state` as a coloured pill; screen readers hear changes. `testid` names it for
/// tests (a page has one per connection).
#[component]
pub fn StatusPill(
    #[prop(into)] state: Signal<ConnectionState>,
    testid: &'static str,
) -> impl IntoView {
    view! {
        <span
            class=move || format!("pill pill-{}", state.get().kind())
            role="status"
            data-testid=testid
        >
            <span class="dot" aria-hidden="true"></span>
            {move || state.get().label()}
        </span>
    }
}

//! The streams card: the busiest streams on the hub (and how many there are), live: their
//! subscribers, what they store, their publishes in the last minute with a sparkline per
//! second, a link that opens a stream's notification list alone (`?stream=`), and a
//! button that adds it to the page's followed streams or removes it.

use std::time::Duration;

use common::{events, paths, query, OverviewOrder, StreamSummary, StreamsOverview};
use leptos::prelude::*;

use crate::components::StatusPill;
use crate::followed::Followed;
use leptos_hub::api::Api;
use leptos_hub::event_source::ConnectionOptions;

/// The overview arrives every 2 s: three missed updates mean a dead connection.
const SILENCE_LIMIT: Duration = Duration::from_secs(6);

/// How many streams the card lists: the busiest, however many the hub has.
const SHOWN: usize = 20;

/// A card with the table of the busiest streams, from `/sse/streams` (shared by the
/// browser's tabs), and how many there are.
#[component]
pub fn StreamsCard() -> impl IntoView {
    let api = use_context::<Api>().unwrap_or_default();
    let overview = RwSignal::new(None::<StreamsOverview>);
    let url = format!(
        "{}?{}={}&{}={SHOWN}",
        api.url(paths::SSE_STREAMS),
        query::SORT,
        OverviewOrder::Busiest.as_str(),
        query::LIMIT,
    );
    let connection = ConnectionOptions::new({
        let url = url.clone();
        move |_| url.clone()
    })
    .events(&[events::STREAMS])
    .silence_limit(SILENCE_LIMIT)
    .shared(url)
    .connect(move |message| {
        if let Ok(update) = serde_json::from_str::<StreamsOverview>(&message.data) {
            overview.set(Some(update));
        }
    });
    let streams =
        move || overview.with(|o| o.as_ref().map(|o| o.streams.clone()).unwrap_or_default());
    view! {
        <section class="card streams" aria-labelledby="streams-title">
            <header class="card-header">
                <h2 id="streams-title">"Streams"</h2>
                <StatusPill state=connection.state testid="streams-state" />
            </header>
            <table class="streams-table" data-testid="streams-table">
                <thead>
                    <tr>
                        <th scope="col">"stream"</th>
                        <th scope="col" class="count" title="subscribers connected now">"subs"</th>
                        <th scope="col" class="count" title="notifications stored">"stored"</th>
                        <th scope="col" class="rate" title="publishes in the last minute, per second">"last minute"</th>
                    </tr>
                </thead>
                <tbody>
                    <For
                        each=streams
                        key=|s| (s.name.clone(), s.subscribers, s.stored, s.publishes_per_second.clone())
                        children=move |summary| view! { <StreamRow summary /> }
                    />
                </tbody>
            </table>
            <p class="empty" class:hidden=move || overview.with(|o| o.as_ref().is_none_or(|o| !o.streams.is_empty()))>
                "No streams yet."
            </p>
            <p class="more" data-testid="streams-total" class:hidden=move || overview.with(|o| o.as_ref().is_none_or(|o| o.total <= o.streams.len() as u64))>
                {move || overview.with(|o| o.as_ref().map(|o| format!("The {} busiest of {} streams.", o.streams.len(), o.total)).unwrap_or_default())}
            </p>
        </section>
    }
}

/// One stream's row, highlighted while followed by name.
#[component]
fn StreamRow(summary: StreamSummary) -> impl IntoView {
    let href = format!("?{}={}", common::query::STREAM, summary.name);
    let label = summary.name.clone();
    let followed = use_context::<Followed>();
    let name = summary.name.clone();
    let following = Signal::derive(move || followed.is_some_and(|f| f.has(&name)));
    let toggle = followed.map(|followed| {
        let name = summary.name.clone();
        let action = move || {
            if following.get() {
                "Unfollow"
            } else {
                "Follow"
            }
        };
        let aria = {
            let name = name.clone();
            move || format!("{} {name}", action())
        };
        view! {
            <button
                type="button"
                class="small"
                data-testid="stream-follow"
                aria-label=aria
                on:click=move |_| {
                    if following.get_untracked() {
                        followed.remove(&name);
                    } else if let Err(reason) = followed.add(&name) {
                        leptos::logging::warn!("{reason}");
                    }
                }
            >
                {action}
            </button>
        }
    });
    view! {
        <tr class:current=following data-testid="stream-row" data-stream=summary.name>
            <td><a href=href>{label}</a> {toggle}</td>
            <td data-testid="stream-subscribers">{summary.subscribers}</td>
            <td data-testid="stream-stored">{summary.stored}</td>
            <td class="rate">
                <Sparkline values=summary.publishes_per_second />
                <span data-testid="stream-per-minute">{summary.publishes_last_minute}</span>
            </td>
        </tr>
    }
}

/// Width and height of a sparkline, in SVG units.
const SPARK_W: f64 = 90.0;
const SPARK_H: f64 = 18.0;

/// A line of `values` (oldest first), scaled to the largest.
#[component]
fn Sparkline(values: Vec<u32>) -> impl IntoView {
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = SPARK_W / (values.len().max(2) - 1) as f64;
    let points = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                SPARK_H - f64::from(v) / max * (SPARK_H - 2.0) - 1.0
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    view! {
        <svg class="sparkline" viewBox=format!("0 0 {SPARK_W} {SPARK_H}") width="90" height="18" aria-hidden="true">
            <polyline points=points fill="none" stroke="currentColor" stroke-width="1.5" />
        </svg>
    }
}

//! The streams the page follows: names and patterns (`alerts.*`), kept across reloads.
//!
//! `?stream=a&stream=alerts.*` in the page's address sets them for that address, and
//! changes are written back into it (`history.replaceState`), so a reload or a shared link
//! shows the same set. Without it, the set is the browser's own, in `localStorage`
//! (`messages` on a first visit). Every change is checked with the server's own rule
//! ([`Selection`]) before it is made.

use common::{query, Selection, Selector, DEFAULT_STREAM};
use leptos::prelude::*;
use leptos_hub::storage;

/// Where the browser's set is kept, one selector per line.
const KEY: &str = "notify-hub:followed";

/// The followed set as a signal, provided as context to the components that change it.
#[derive(Clone, Copy)]
pub struct Followed {
    set: RwSignal<Vec<String>>,
    /// Whether the set came from the page's address (and is written back there).
    in_address: bool,
}

impl Followed {
    /// The set of the page's address, else the browser's, else `messages`; every change
    /// is remembered where it came from.
    pub fn load() -> Self {
        let from_address: Vec<String> = page_params()
            .map(|params| {
                params
                    .get_all(query::STREAM)
                    .iter()
                    .filter_map(|v| v.as_string())
                    .collect()
            })
            .unwrap_or_default();
        let in_address = valid(&from_address);
        let stored: Vec<String> = storage::get(KEY)
            .map(|text| text.lines().map(str::to_owned).collect())
            .unwrap_or_default();
        let initial = [from_address, stored]
            .into_iter()
            .find(|set| valid(set))
            .unwrap_or_else(|| vec![DEFAULT_STREAM.to_owned()]);
        let followed = Self {
            set: RwSignal::new(initial),
            in_address,
        };
        Effect::new(move |_| followed.set.with(|set| followed.remember(set)));
        followed
    }

    /// The set, as the feed follows it.
    pub fn streams(&self) -> Signal<Vec<String>> {
        self.set.into()
    }

    /// Whether `name` is in the set itself (not only matched by a pattern).
    pub fn has(&self, name: &str) -> bool {
        self.set.with(|set| set.iter().any(|s| s == name))
    }

    /// Adds `selector`, or says why it cannot be followed.
    pub fn add(&self, selector: &str) -> Result<(), String> {
        let selector = selector.trim();
        let mut next = self.set.get_untracked();
        if next.iter().any(|s| s == selector) {
            return Ok(());
        }
        next.push(selector.to_owned());
        Selection::parse(next.iter().map(String::as_str)).map_err(|invalid| invalid.0)?;
        self.set.set(next);
        Ok(())
    }

    /// Stops following `selector`; the last one stays (a page follows at least one).
    pub fn remove(&self, selector: &str) {
        self.set.update(|set| {
            if set.len() > 1 {
                set.retain(|s| s != selector);
            }
        });
    }

    /// Writes `set` where it came from.
    fn remember(&self, set: &[String]) {
        if !self.in_address {
            storage::set(KEY, &set.join("\n"));
            return;
        }
        let query = leptos_hub::api::selection_query(set);
        if let Some(history) = web_sys::window().and_then(|w| w.history().ok()) {
            let _ = history.replace_state_with_url(
                &wasm_bindgen::JsValue::NULL,
                "",
                Some(&format!("?{query}")),
            );
        }
    }
}

/// Whether `set` is one the server takes.
fn valid(set: &[String]) -> bool {
    Selection::parse(set.iter().map(String::as_str)).is_ok()
}

/// Whether `selector` is a pattern (it covers streams by prefix).
pub fn is_pattern(selector: &str) -> bool {
    matches!(selector.parse(), Ok(Selector::Prefix(_)))
}

/// The page's query parameters.
fn page_params() -> Option<web_sys::UrlSearchParams> {
    let search = web_sys::window()?.location().search().ok()?;
    web_sys::UrlSearchParams::new_with_str(&search).ok()
}

//! The app's components in headless Chrome, against a real server that `scripts/test.sh`
//! starts (its URL comes in `HUB_TEST_SERVER` at build time). The client's own pieces
//! (the connection, the tab group, the feed) are tested in `leptos-hub/tests/web.rs`.

use std::time::Duration;

use frontend::components::{NotificationPanel, ServerClock};
use gloo_timers::future::sleep;
use leptos::prelude::*;
use leptos_hub::api::Api;
use leptos_hub::notification_feed::use_notification_feed;
use wasm_bindgen_test::*;
use web_sys::wasm_bindgen::JsCast;

wasm_bindgen_test_configure!(run_in_browser);

const SERVER: &str = match option_env!("HUB_TEST_SERVER") {
    Some(url) => url,
    None => "http://127.0.0.1:18932",
};

/// Polls `condition` every 20 ms until it holds, failing after `limit`.
async fn wait_until(what: &str, limit: Duration, condition: impl Fn() -> bool) {
    let start = js_sys::Date::now();
    while !condition() {
        assert!(
            js_sys::Date::now() - start < limit.as_millis() as f64,
            "timed out waiting for: {what}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes through the server's API, as another client would.
async fn publish(stream: &str, title: &str) -> common::Notification {
    let new = common::NewNotification {
        stream: Some(stream.into()),
        title: title.into(),
        ..Default::default()
    };
    Api::new(SERVER).publish(&new).await.unwrap()
}

/// A stream name no other test run has used.
fn unique_stream(prefix: &str) -> String {
    format!("{prefix}-{}", js_sys::Math::random().to_bits())
}

/// A fresh element in the test page to mount a component into.
fn new_root() -> web_sys::HtmlElement {
    let document = web_sys::window().unwrap().document().unwrap();
    let root: web_sys::HtmlElement = document.create_element("div").unwrap().unchecked_into();
    document.body().unwrap().append_child(&root).unwrap();
    root
}

/// The text of the first element under `root` with `data-testid=testid`.
fn text_in(root: &web_sys::HtmlElement, testid: &str) -> String {
    root.query_selector(&format!("[data-testid={testid}]"))
        .unwrap()
        .map(|e| e.text_content().unwrap_or_default())
        .unwrap_or_default()
}

#[wasm_bindgen_test]
async fn clock_component_shows_the_ticking_server_time() {
    let root = new_root();
    let _mounted = leptos::mount::mount_to(root.clone(), || {
        provide_context(Api::new(SERVER));
        let feed = use_notification_feed(vec!["clock-test".to_owned()]);
        view! { <ServerClock time=feed.server_time() state=feed.state() /> }
    });
    let text = |testid: &str| text_in(&root, testid);
    wait_until("the state reads live", Duration::from_secs(10), || {
        text("clock-state") == "live"
    })
    .await;
    wait_until("a first tick", Duration::from_secs(5), || {
        text("server-time-raw").ends_with('Z')
    })
    .await;
    let first = text("server-time-raw");
    wait_until("the time to change", Duration::from_secs(5), || {
        text("server-time-raw") != first
    })
    .await;
    assert!(
        text("drift").starts_with("Local clock is"),
        "{}",
        text("drift")
    );
    assert!(text("server-time").contains(':'), "{}", text("server-time"));
}

#[wasm_bindgen_test]
async fn notification_panel_lists_history_then_live_notifications() {
    let stream: &'static str = Box::leak(unique_stream("panel").into_boxed_str());
    let old = publish(stream, "from history").await;
    let root = new_root();
    let _mounted = leptos::mount::mount_to(root.clone(), move || {
        provide_context(Api::new(SERVER));
        view! { <NotificationPanel notifications=use_notification_feed(vec![stream.to_owned()]) /> }
    });
    let items = || {
        let list = root
            .query_selector_all("[data-testid=notification-item]")
            .unwrap();
        (0..list.length())
            .map(|i| list.item(i).unwrap().text_content().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    wait_until("history shows", Duration::from_secs(10), || {
        items().len() == 1
    })
    .await;
    assert!(items()[0].contains(&old.title));
    wait_until("live", Duration::from_secs(10), || {
        text_in(&root, "notifications-state") == "live"
    })
    .await;
    publish(stream, "arrived live").await;
    wait_until("the live one shows", Duration::from_secs(10), || {
        items().len() == 2
    })
    .await;
    assert!(
        items()[0].contains("arrived live"),
        "newest first: {:?}",
        items()
    );
    assert_eq!(text_in(&root, "unread-count"), "1");
}

#[wasm_bindgen_test]
async fn history_retries_stop_when_the_panel_is_gone() {
    // Count the page's history requests by wrapping `fetch`.
    js_sys::Function::new_no_args(
        "if (!window.__historyFetches) {
           window.__historyFetches = 0;
           const fetch = window.fetch;
           window.fetch = function (input, init) {
             if (String(input.url || input).includes('/api/notifications')) window.__historyFetches++;
             return fetch.apply(this, arguments);
           };
         }",
    )
    .call0(&web_sys::wasm_bindgen::JsValue::NULL)
    .unwrap();
    let fetches = || {
        js_sys::Reflect::get(&js_sys::global(), &"__historyFetches".into())
            .unwrap()
            .as_f64()
            .unwrap_or(0.0)
    };
    let before = fetches();
    let root = new_root();
    // Nothing listens on port 9: every history request fails at once and is retried.
    let mounted = leptos::mount::mount_to(root, || {
        provide_context(Api::new("http://127.0.0.1:9"));
        view! { <NotificationPanel notifications=use_notification_feed(vec!["gone".to_owned()]) /> }
    });
    wait_until("two retries", Duration::from_secs(10), || {
        fetches() - before >= 3.0
    })
    .await;
    drop(mounted);
    let at_unmount = fetches();
    // Requests to a closed port fail at once, so none is in flight at unmount; the next
    // retry would come within 4 s (backoff 500 ms doubling, jittered).
    sleep(Duration::from_secs(5)).await;
    assert_eq!(fetches(), at_unmount, "no retry after the panel is gone");
}

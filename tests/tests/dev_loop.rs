//! The development loop of the README: the real server on one port, `trunk serve` on
//! another with its proxy pointed at it, and a real Chromium on trunk's port. The page
//! loads through trunk, streams pass through trunk's proxy as they are sent, and an edit
//! to a frontend source rebuilds the app and reloads the open page.

use std::time::{Duration, Instant};

use e2e::trunk::{TrunkServe, WorkspaceCopy};
use e2e::{eventually, Browser, ServerProcess};
use fantoccini::Locator;
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn trunk_serve_proxies_streams_as_sent_and_reloads_the_page_after_an_edit(
) -> anyhow::Result<()> {
    let db = tempfile::tempdir()?;
    let server = ServerProcess::api_only("127.0.0.1:0", &db.path().join("hub.db"), &[])?;
    let copy = WorkspaceCopy::new()?;
    let started = Instant::now();
    let trunk = TrunkServe::start(&copy, &server.url).await?;
    let first_wasm = trunk.wasm_name(WAIT).await?;
    println!(
        "trunk serve: first build served after {:.1} s ({first_wasm})",
        started.elapsed().as_secs_f64()
    );

    // Every path the app calls reaches the server through trunk's proxy.
    for path in [
        "/healthz",
        "/metrics",
        "/api/streams",
        "/api/notifications?stream=devloop",
    ] {
        let response = reqwest::get(format!("{}{path}", trunk.url)).await?;
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }
    let clock = reqwest::get(format!("{}/sse/time?interval_ms=10&count=3", trunk.url)).await?;
    assert!(clock.text().await?.matches("event: time").count() == 3);

    // A notification published to the server arrives through the proxy within a second:
    // the proxy passes the stream on as it is sent, not when it ends.
    let response = reqwest::get(format!("{}/events?stream=devloop", trunk.url)).await?;
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "{:?}",
        response.headers()
    );
    let mut body = response.bytes_stream();
    let published_at = Instant::now();
    let trigger = reqwest::Client::new()
        .post(format!("{}/trigger?stream=devloop", server.url))
        .send()
        .await?;
    assert!(trigger.status().is_success());
    let mut seen = String::new();
    let arrived = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk?));
            if seen.contains("Triggered at") {
                return anyhow::Ok(published_at.elapsed());
            }
        }
        anyhow::bail!("the stream ended")
    })
    .await;
    let arrived = arrived
        .map_err(|_| anyhow::anyhow!("nothing within a second through trunk; got {seen:?}"))??;
    println!(
        "trunk serve: a notification reached a subscriber through the proxy {} ms after it was published",
        arrived.as_millis()
    );

    // The page, through trunk, goes live and lists what the server gets.
    let browser = Browser::start().await?;
    browser
        .client
        .goto(&format!("{}/?stream=devloop", trunk.url))
        .await?;
    browser
        .wait_text("notifications-state", WAIT, |t| t == "live")
        .await?;
    browser
        .client
        .execute("window.beforeTheEdit = true;", vec![])
        .await?;

    // An edit to a frontend source: trunk rebuilds, serves a new wasm and reloads the page.
    let edited_at = Instant::now();
    copy.edit(
        "frontend/src/components/app.rs",
        "Live updates over Server-Sent Events",
        "Live updates, edited while trunk serves",
    )?;
    let second_wasm = trunk
        .wasm_name_other_than(&first_wasm, Duration::from_secs(300))
        .await?;
    eventually("the page to reload with the edit", WAIT, || async {
        let reloaded = browser
            .client
            .execute("return window.beforeTheEdit === undefined;", vec![])
            .await?;
        let tagline = match browser.client.find(Locator::Css(".tagline")).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        Ok(
            (reloaded.as_bool() == Some(true) && tagline.contains("edited while trunk serves"))
                .then_some(()),
        )
    })
    .await?;
    println!(
        "trunk serve: an edit was rebuilt ({second_wasm}) and the open page reloaded {:.1} s later",
        edited_at.elapsed().as_secs_f64()
    );
    browser.close().await
}

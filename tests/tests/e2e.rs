//! End to end: the real server binary serves the built app to a real Chromium.

use std::time::Duration;

use tests::{workspace, Browser, Server};

#[tokio::test]
async fn the_page_shows_a_ticking_server_clock_that_is_live() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let browser = Browser::start().await?;
    browser.client.goto(&server.url).await?;

    browser
        .wait_text("connection-state", Duration::from_secs(20), |t| t == "live")
        .await?;
    let first = browser
        .wait_text("server-time-raw", Duration::from_secs(10), |t| {
            t.ends_with('Z')
        })
        .await?;
    let later = browser
        .wait_text("server-time-raw", Duration::from_secs(5), |t| {
            t != first && t.ends_with('Z')
        })
        .await?;
    assert!(later > first, "time moves forward: {first} then {later}");
    assert!(browser.text("drift").await.starts_with("Local clock is"));

    let png = browser.client.screenshot().await?;
    std::fs::write(workspace().join("target/e2e-clock.png"), png)?;
    browser.close().await
}

//! End to end: the real server binary serves the built app to a real Chromium.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::{dist, eventually, server_bin, workspace, Browser, ServerProcess};
use fantoccini::Locator;

const WAIT: Duration = Duration::from_secs(20);

/// The texts of the listed notifications, newest first.
async fn items(browser: &Browser) -> anyhow::Result<Vec<String>> {
    browser
        .read_all("[data-testid=notification-item]", "innerText")
        .await
}

/// Waits until the page's notification stream is live.
async fn notifications_live(browser: &Browser) -> anyhow::Result<()> {
    browser
        .wait_text("notifications-state", WAIT, |t| t == "live")
        .await?;
    Ok(())
}

/// Waits until some listed notification contains `text`; returns the list.
async fn wait_for_item(browser: &Browser, text: &str) -> anyhow::Result<Vec<String>> {
    eventually(&format!("a notification with {text:?}"), WAIT, || async {
        let items = items(browser).await?;
        Ok(items
            .iter()
            .any(|item| item.contains(text))
            .then_some(items))
    })
    .await
}

#[tokio::test]
async fn the_page_shows_a_ticking_server_clock_that_is_live() -> anyhow::Result<()> {
    let db = tempfile::tempdir()?;
    let server = ServerProcess::serve(&dist()?, &db.path().join("hub.db"), &[])?;
    let browser = Browser::start().await?;
    browser.client.goto(&server.url).await?;
    // When the first tick is on screen, in ms since navigation started (polled every few ms
    // through WebDriver, so a few ms late at most).
    let first_tick_ms = eventually("the first tick on screen", WAIT, || async {
        let painted = browser
            .client
            .execute(
                "const t = document.querySelector('[data-testid=server-time-raw]');\
                 return t && t.textContent.endsWith('Z') ? performance.now() : null;",
                vec![],
            )
            .await?;
        Ok(painted.as_f64())
    })
    .await?;
    println!("first server-time tick painted {first_tick_ms:.0} ms after navigation started");

    browser
        .wait_text("clock-state", WAIT, |t| t == "live")
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
    browser.close().await
}

/// Waits until the page's own `EventSource` (the global `source` of the seed-style pages
/// here) is open: a message sent before it opens is not for it.
async fn source_open(browser: &Browser, what: &str) -> anyhow::Result<()> {
    eventually(&format!("{what} to open"), WAIT, || async {
        let state = browser
            .client
            .execute("return source.readyState", vec![])
            .await?;
        Ok((state == 1).then_some(()))
    })
    .await
}

/// Trigger → listed; reload → still listed; published by the CLI while the page is
/// closed → listed (and unread, like everything not marked read) when it is opened again.
#[tokio::test]
async fn notifications_survive_reloads_and_arrive_while_the_page_is_closed() -> anyhow::Result<()> {
    let db = tempfile::tempdir()?;
    let server = ServerProcess::serve(&dist()?, &db.path().join("hub.db"), &[])?;
    let browser = Browser::start().await?;
    browser.client.goto(&server.url).await?;
    notifications_live(&browser).await?;

    browser.click("trigger-button").await?;
    let triggered = wait_for_item(&browser, "Triggered at").await?;
    assert_eq!(triggered.len(), 1, "{triggered:?}");

    browser.client.refresh().await?;
    notifications_live(&browser).await?;
    let after_reload = wait_for_item(&browser, "Triggered at").await?;
    assert_eq!(
        after_reload, triggered,
        "the same single notification after a reload"
    );

    browser.client.goto("about:blank").await?;
    let output = Command::new(server_bin())
        .args([
            "publish",
            "--url",
            &server.url,
            "--title",
            "Sent while you were away",
        ])
        .args(["--body", "published by the CLI", "--level", "warning"])
        .output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    browser.client.goto(&server.url).await?;
    let reopened = wait_for_item(&browser, "Sent while you were away").await?;
    assert_eq!(reopened.len(), 2, "{reopened:?}");
    assert!(
        reopened[0].contains("Sent while you were away"),
        "newest first: {reopened:?}"
    );
    // Nothing was marked read: the triggered one and the new one are both unread.
    browser
        .wait_text("unread-count", WAIT, |t| t == "2")
        .await?;

    // The form: a custom notification, and a server-side refusal shown inline.
    notifications_live(&browser).await?;
    browser
        .type_into("trigger-title", "Build 42 is green")
        .await?;
    browser
        .type_into("trigger-body", "All 118 checks passed")
        .await?;
    browser.click("trigger-button").await?;
    wait_for_item(&browser, "Build 42 is green").await?;
    browser
        .type_into("trigger-body", "a body without a title")
        .await?;
    browser.click("trigger-button").await?;
    browser
        .wait_text("trigger-error", WAIT, |t| {
            t.contains("title must not be empty")
        })
        .await?;

    let png = browser.client.screenshot().await?;
    std::fs::write(workspace().join("target/e2e-app.png"), png)?;
    browser.close().await
}

/// The seeds' plain pages, served unchanged next to the app, work against the server.
#[tokio::test]
async fn the_seed_pages_work_unchanged() -> anyhow::Result<()> {
    let assets = tempfile::tempdir()?;
    for page in ["messages.html", "time.html"] {
        std::fs::copy(
            Path::new(&workspace()).join("tests/seed").join(page),
            assets.path().join(page),
        )?;
    }
    let db = tempfile::tempdir()?;
    let server = ServerProcess::serve(assets.path(), &db.path().join("hub.db"), &[])?;
    let browser = Browser::start().await?;

    browser
        .client
        .goto(&format!("{}/messages.html", server.url))
        .await?;
    // The page's own EventSource must be open before the click, or the message is not
    // for it: it subscribes without a Last-Event-ID.
    source_open(&browser, "the seed page's EventSource").await?;
    browser
        .client
        .find(Locator::Id("trigger"))
        .await?
        .click()
        .await?;
    let message = eventually("the triggered message in the seed page", WAIT, || async {
        Ok(browser
            .read_all("#messages li", "innerText")
            .await?
            .into_iter()
            .next())
    })
    .await?;
    let notification: common::Notification = serde_json::from_str(&message)?;
    assert!(notification.title.starts_with("Triggered at"), "{message}");

    browser
        .client
        .goto(&format!("{}/time.html", server.url))
        .await?;
    eventually(
        "the seed time page to show the second tick",
        WAIT,
        || async {
            let text = browser
                .client
                .find(Locator::Id("time"))
                .await?
                .text()
                .await?;
            Ok((text.starts_with("2 ") && text.ends_with('Z')).then_some(()))
        },
    )
    .await?;
    browser.close().await
}

/// `?stream=` picks the stream the page follows: here the demo counter.
#[tokio::test]
async fn the_page_follows_the_stream_named_in_its_address() -> anyhow::Result<()> {
    let db = tempfile::tempdir()?;
    let server = ServerProcess::serve(&dist()?, &db.path().join("hub.db"), &["--demo"])?;
    let browser = Browser::start().await?;
    browser
        .client
        .goto(&format!("{}/?stream=counter", server.url))
        .await?;
    assert_eq!(followed(&browser).await?, ["counter"]);
    let counts = eventually("the counter to tick in the list", WAIT, || async {
        let items = items(&browser).await?;
        Ok((items.len() >= 3).then_some(items))
    })
    .await?;
    let newest: u64 = counts[0]
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .parse()?;
    let older: u64 = counts[2]
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .parse()?;
    assert!(newest > older, "newest first: {counts:?}");
    browser.close().await
}

/// An empty form on another stream publishes there, titled with the server's time (the
/// server writes nanoseconds; a browser's clock would give milliseconds).
#[tokio::test]
async fn an_empty_form_on_another_stream_is_titled_with_the_server_time() -> anyhow::Result<()> {
    let db = tempfile::tempdir()?;
    let server = ServerProcess::serve(&dist()?, &db.path().join("hub.db"), &[])?;
    let browser = Browser::start().await?;
    browser
        .client
        .goto(&format!("{}/?stream=ops", server.url))
        .await?;
    notifications_live(&browser).await?;
    browser.click("trigger-button").await?;
    let listed = wait_for_item(&browser, "Triggered at").await?;
    let time = listed[0]
        .split("Triggered at ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default();
    assert_eq!(
        time.len(),
        "2026-01-01T00:00:00.123456789Z".len(),
        "{listed:?}"
    );

    let history: common::History =
        reqwest::get(format!("{}/api/notifications?stream=ops", server.url))
            .await?
            .json()
            .await?;
    assert_eq!(history.notifications.len(), 1);
    assert_eq!(
        history.notifications[0].title,
        format!("Triggered at {time}")
    );
    browser.close().await
}

/// How many subscribers `stream` has on the server, from `/api/streams`, as an overview
/// made after this call (the hub makes one at most every [`common::OVERVIEW_MAX_AGE`]).
async fn subscribers(server: &ServerProcess, stream: &str) -> anyhow::Result<u64> {
    tokio::time::sleep(common::OVERVIEW_MAX_AGE).await;
    let overview: common::StreamsOverview = reqwest::get(format!("{}/api/streams", server.url))
        .await?
        .json()
        .await?;
    Ok(overview
        .streams
        .iter()
        .find(|s| s.name == stream)
        .map_or(0, |s| s.subscribers))
}

/// The streams the current tab follows, as its chips show them.
async fn followed(browser: &Browser) -> anyhow::Result<Vec<String>> {
    browser
        .read_all("[data-testid=followed-stream]", "dataset.stream")
        .await
}

/// How many long-lived streams (SSE connections) the server holds, from `/metrics`.
async fn streams_open(server: &ServerProcess) -> anyhow::Result<u64> {
    let page = reqwest::get(format!("{}/metrics", server.url))
        .await?
        .text()
        .await?;
    let line = (page.lines())
        .find(|line| line.starts_with("notify_hub_streams_open "))
        .ok_or_else(|| anyhow::anyhow!("no notify_hub_streams_open in /metrics"))?;
    Ok(line.rsplit(' ').next().unwrap_or_default().parse()?)
}

#[tokio::test]
async fn eight_tabs_on_eight_streams_share_one_connection_and_a_tab_adds_a_stream(
) -> anyhow::Result<()> {
    const TABS: usize = 8;
    let db = tempfile::tempdir()?;
    let server = ServerProcess::serve(&dist()?, &db.path().join("hub.db"), &[])?;
    let browser = Browser::start().await?;
    let client = &browser.client;
    let mut tabs = vec![client.window().await?];
    for _ in 1..TABS {
        tabs.push(client.new_window(true).await?.handle);
    }
    for (n, tab) in tabs.iter().enumerate() {
        client.switch_to_window(tab.clone()).await?;
        client
            .goto(&format!("{}/?stream=tab{n}", server.url))
            .await?;
        notifications_live(&browser).await?;
    }
    // Every tab's stream has the one subscriber, the leader's connection for the union.
    let held = eventually("one subscriber on every tab's stream", WAIT, || async {
        let mut each = Vec::new();
        for n in 0..TABS {
            each.push(subscribers(&server, &format!("tab{n}")).await?);
        }
        Ok(each.iter().all(|&held| held == 1).then_some(each))
    })
    .await?;
    let open = streams_open(&server).await?;
    println!("{TABS} tabs on {TABS} streams: {open} connections (the feed's and the streams card's), subscribers {held:?}");
    assert_eq!(
        open, 2,
        "one connection for every tab's feed, one for the streams card"
    );

    // Each tab lists its own stream's notifications, and only those.
    for n in [3, 6] {
        server
            .publish(&format!("tab{n}"), &format!("for tab {n}"))
            .await?;
    }
    for (n, tab) in tabs.iter().enumerate() {
        client.switch_to_window(tab.clone()).await?;
        if n == 3 || n == 6 {
            wait_for_item(&browser, &format!("for tab {n}")).await?;
        }
        assert_eq!(
            count_items(&browser, "for tab").await?,
            usize::from(n == 3 || n == 6)
        );
    }

    // The first tab adds a pattern: it gets tab3's history and what comes next, once, and
    // the browser still holds one connection for the feeds.
    client.switch_to_window(tabs[0].clone()).await?;
    browser.type_into("follow-input", "tab3*").await?;
    browser.click("follow-button").await?;
    assert_eq!(followed(&browser).await?, ["tab0", "tab3*"]);
    wait_for_item(&browser, "for tab 3").await?;
    server.publish("tab3", "after tab 0 added it").await?;
    wait_for_item(&browser, "after tab 0 added it").await?;
    server.publish("tab0", "own stream still followed").await?;
    wait_for_item(&browser, "own stream still followed").await?;
    assert_eq!(count_items(&browser, "for tab 3").await?, 1);
    assert_eq!(count_items(&browser, "after tab 0 added it").await?, 1);
    assert_eq!(streams_open(&server).await?, 2);
    // The set survives a reload.
    client.refresh().await?;
    notifications_live(&browser).await?;
    assert_eq!(followed(&browser).await?, ["tab0", "tab3*"]);
    wait_for_item(&browser, "after tab 0 added it").await?;
    // A bad selector is refused with the server's reason.
    browser.type_into("follow-input", "no spaces").await?;
    browser.click("follow-button").await?;
    let reason = browser
        .wait_text("follow-error", WAIT, |t| !t.is_empty())
        .await?;
    assert!(reason.contains("is not a stream selector"), "{reason}");
    browser.close().await
}

/// How many listed notifications in the current tab contain `text`.
async fn count_items(browser: &Browser, text: &str) -> anyhow::Result<usize> {
    Ok(items(browser)
        .await?
        .iter()
        .filter(|item| item.contains(text))
        .count())
}

#[tokio::test]
async fn eight_tabs_share_one_connection_and_survive_the_leader_closing() -> anyhow::Result<()> {
    const TABS: usize = 8;
    let db = tempfile::tempdir()?;
    let server = ServerProcess::serve(&dist()?, &db.path().join("hub.db"), &[])?;
    let page = format!("{}/?stream=tabs", server.url);
    let browser = Browser::start().await?;
    let client = &browser.client;
    // The first tab connects (and leads); seven more open one after another.
    client.goto(&page).await?;
    notifications_live(&browser).await?;
    let mut tabs = vec![client.window().await?];
    for _ in 1..TABS {
        let tab = client.new_window(true).await?.handle;
        client.switch_to_window(tab.clone()).await?;
        client.goto(&page).await?;
        tabs.push(tab);
    }
    for tab in &tabs {
        client.switch_to_window(tab.clone()).await?;
        notifications_live(&browser).await?;
        browser
            .wait_text("clock-state", WAIT, |t| t == "live")
            .await?;
    }
    let held = subscribers(&server, "tabs").await?;
    println!("{TABS} tabs hold {held} server connection(s) for their stream and clock");
    assert_eq!(held, 1, "the tabs share one connection");

    // A notification triggered in the last tab shows in every tab, once.
    browser
        .type_into("trigger-title", "from the last tab")
        .await?;
    browser.click("trigger-button").await?;
    for tab in &tabs {
        client.switch_to_window(tab.clone()).await?;
        wait_for_item(&browser, "from the last tab").await?;
        assert_eq!(count_items(&browser, "from the last tab").await?, 1);
    }

    // Close the leader (the first tab); publish meanwhile: every other tab shows it once.
    client.switch_to_window(tabs[0].clone()).await?;
    client.close_window().await?;
    let rest = &tabs[1..];
    reqwest::Client::new()
        .post(format!("{}/api/notifications", server.url))
        .json(&serde_json::json!({"stream": "tabs", "title": "while the leader was gone"}))
        .send()
        .await?
        .error_for_status()?;
    for tab in rest {
        client.switch_to_window(tab.clone()).await?;
        wait_for_item(&browser, "while the leader was gone").await?;
        assert_eq!(count_items(&browser, "while the leader was gone").await?, 1);
        assert_eq!(count_items(&browser, "from the last tab").await?, 1);
    }
    let held = eventually("one connection again", WAIT, || async {
        let held = subscribers(&server, "tabs").await?;
        Ok((held == 1).then_some(held))
    })
    .await?;
    println!(
        "after the leader closed, {} tabs hold {held} connection(s)",
        rest.len()
    );
    browser.close().await
}

/// The unread badge's count (hidden, so empty, at 0).
async fn unread(browser: &Browser, expected: usize) -> anyhow::Result<String> {
    let expected = expected.to_string();
    browser
        .wait_text("unread-count", WAIT, |t| {
            t == expected || (expected == "0" && t.is_empty())
        })
        .await
}

#[tokio::test]
async fn unread_marks_survive_reloads_and_hold_in_every_tab() -> anyhow::Result<()> {
    let db = tempfile::tempdir()?;
    let server = ServerProcess::serve(&dist()?, &db.path().join("hub.db"), &[])?;
    server.publish("reads", "before the first visit").await?;
    let page = format!("{}/?stream=reads", server.url);
    let browser = Browser::start().await?;
    let client = &browser.client;
    client.goto(&page).await?;
    notifications_live(&browser).await?;
    wait_for_item(&browser, "before the first visit").await?;
    unread(&browser, 0).await?;

    server.publish("reads", "first").await?;
    server.publish("reads", "second").await?;
    wait_for_item(&browser, "second").await?;
    unread(&browser, 2).await?;
    client.refresh().await?;
    wait_for_item(&browser, "second").await?;
    unread(&browser, 2).await?;

    // A second tab agrees; marking read there clears the first tab too.
    let first = client.window().await?;
    let second = client.new_window(true).await?.handle;
    client.switch_to_window(second.clone()).await?;
    client.goto(&page).await?;
    wait_for_item(&browser, "second").await?;
    unread(&browser, 2).await?;
    browser.click("mark-read").await?;
    unread(&browser, 0).await?;
    client.switch_to_window(first.clone()).await?;
    unread(&browser, 0).await?;

    // Read marks stay read across a reload; what comes next is unread in both tabs.
    client.refresh().await?;
    wait_for_item(&browser, "second").await?;
    server.publish("reads", "third").await?;
    wait_for_item(&browser, "third").await?;
    unread(&browser, 1).await?;
    client.switch_to_window(second).await?;
    wait_for_item(&browser, "third").await?;
    unread(&browser, 1).await?;
    browser.close().await
}

#[tokio::test]
async fn garbage_in_local_storage_does_not_break_the_page() -> anyhow::Result<()> {
    let db = tempfile::tempdir()?;
    let server = ServerProcess::serve(&dist()?, &db.path().join("hub.db"), &[])?;
    server.publish("junk", "stored").await?;
    let browser = Browser::start().await?;
    let client = &browser.client;
    let page = format!("{}/?stream=junk", server.url);
    client.goto(&page).await?;
    // Old keys, ids of another backend, and plain garbage.
    client
        .execute(
            r#"for (const [k, v] of [
                   ["notify-hub:read-through:junk", "99999999"],
                   ["notify-hub:last-event-id:junk", "\u0000garbage\n"],
                   ["notify-hub:read-through:messages", "1732371600000-0"]])
                 localStorage.setItem(k, v);"#,
            vec![],
        )
        .await?;
    client.refresh().await?;
    notifications_live(&browser).await?;
    wait_for_item(&browser, "stored").await?;
    server.publish("junk", "live after the junk").await?;
    wait_for_item(&browser, "live after the junk").await?;
    browser.close().await
}

#[tokio::test]
async fn the_streams_card_shows_every_stream_live_and_opens_one() -> anyhow::Result<()> {
    let db = tempfile::tempdir()?;
    let server = ServerProcess::serve(&dist()?, &db.path().join("hub.db"), &[])?;
    server.publish("other", "in the other stream").await?;
    let browser = Browser::start().await?;
    let client = &browser.client;
    client
        .goto(&format!("{}/?stream=watched", server.url))
        .await?;
    browser
        .wait_text("streams-state", WAIT, |t| t == "live")
        .await?;
    for n in 0..3 {
        server.publish("watched", &format!("watched {n}")).await?;
    }
    let cell = |stream: &str, column: &str| {
        format!("[data-testid=stream-row][data-stream='{stream}'] [data-testid={column}]")
    };
    let text_of = |selector: String| async move {
        match client.find(Locator::Css(&selector)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    };
    // Updated live (every 2 s): the page's own subscription, the three publishes.
    eventually("the watched stream's row", WAIT, || async {
        let row = (
            text_of(cell("watched", "stream-subscribers")).await,
            text_of(cell("watched", "stream-stored")).await,
            text_of(cell("watched", "stream-per-minute")).await,
        );
        Ok((row == ("1".into(), "3".into(), "3".into())).then_some(()))
    })
    .await?;
    assert_eq!(text_of(cell("other", "stream-stored")).await, "1");

    client
        .find(Locator::Css("[data-stream='other'] a"))
        .await?
        .click()
        .await?;
    wait_for_item(&browser, "in the other stream").await?;
    assert_eq!(followed(&browser).await?, ["other"]);
    browser.close().await
}

#[tokio::test]
async fn a_401_on_trigger_asks_for_a_token_that_then_publishes_and_opens_private_streams(
) -> anyhow::Result<()> {
    const SECRET: &str = "an-e2e-secret-of-32-characters!!";
    let db = tempfile::tempdir()?;
    let server = ServerProcess::serve(
        &dist()?,
        &db.path().join("hub.db"),
        &["--jwt-secret", SECRET, "--private-stream", "secret"],
    )?;
    let minted = Command::new(server_bin())
        .args([
            "token",
            "--jwt-secret",
            SECRET,
            "--publish",
            "*",
            "--subscribe",
            "secret",
        ])
        .output()?;
    assert!(
        minted.status.success(),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    let token = String::from_utf8(minted.stdout)?.trim().to_owned();

    let browser = Browser::start().await?;
    browser
        .client
        .goto(&format!("{}/?stream=secret", server.url))
        .await?;
    // The private stream is refused, and the pill says why.
    browser
        .wait_text("notifications-state", WAIT, |t| t.contains("not allowed"))
        .await?;
    browser.type_into("trigger-title", "with a token").await?;
    browser.click("trigger-button").await?;
    browser
        .wait_text("trigger-error", WAIT, |t| t.contains("token"))
        .await?;
    browser.type_into("token-input", &token).await?;
    browser.click("token-save").await?;
    // The publish went out with the token, and the cookie opened the private stream.
    wait_for_item(&browser, "with a token").await?;
    notifications_live(&browser).await?;
    let kept = browser
        .client
        .execute(
            "return [sessionStorage.getItem('notify-hub:token') !== null, \
                  Object.keys(localStorage).some(k => localStorage.getItem(k).includes('.'))];",
            vec![],
        )
        .await?;
    assert_eq!(
        kept,
        serde_json::json!([true, false]),
        "the token stays in sessionStorage only"
    );
    browser.close().await
}

#[tokio::test]
async fn when_the_leader_tab_freezes_another_takes_over() -> anyhow::Result<()> {
    let db = tempfile::tempdir()?;
    let server = ServerProcess::serve(&dist()?, &db.path().join("hub.db"), &[])?;
    let page = format!("{}/?stream=frozen", server.url);
    let browser = Browser::start().await?;
    let client = &browser.client;
    client.goto(&page).await?;
    notifications_live(&browser).await?;
    let leader = client.window().await?;
    let follower = client.new_window(true).await?.handle;
    client.switch_to_window(follower.clone()).await?;
    client.goto(&page).await?;
    notifications_live(&browser).await?;

    // Freeze the leader, as Chrome freezes background tabs: its JavaScript stops, its lock
    // stays held. The follower hears nothing from it and takes over.
    client.switch_to_window(leader).await?;
    browser
        .devtools(
            "Page.setWebLifecycleState",
            serde_json::json!({"state": "frozen"}),
        )
        .await?;
    client.switch_to_window(follower).await?;
    let frozen_at = std::time::Instant::now();
    server
        .publish("frozen", "while the leader was frozen")
        .await?;
    wait_for_item(&browser, "while the leader was frozen").await?;
    assert_eq!(
        count_items(&browser, "while the leader was frozen").await?,
        1
    );
    println!(
        "the leader tab froze; the other tab showed what was published {:.1} s later",
        frozen_at.elapsed().as_secs_f64()
    );
    browser.close().await
}

/// `name`'s value in a Prometheus text page (0 when it is not there yet).
async fn metric(server: &ServerProcess, name: &str) -> anyhow::Result<f64> {
    let page = reqwest::get(format!("{}/metrics", server.url))
        .await?
        .text()
        .await?;
    Ok(page
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0))
}

/// Two instances sharing one real Redis behind a proxy that sends reads to A and writes
/// to B: the page streams from A, its Trigger publishes through B, and the notification
/// appears.
#[tokio::test]
async fn with_two_instances_on_redis_a_trigger_through_one_appears_from_the_other(
) -> anyhow::Result<()> {
    let redis = e2e::redis::shared_url();
    let prefix = e2e::redis::unique_prefix();
    let args = ["--redis", redis.as_str(), "--redis-prefix", prefix.as_str()];
    let dbs = tempfile::tempdir()?;
    let a = ServerProcess::serve(&dist()?, &dbs.path().join("a.db"), &args)?;
    let b = ServerProcess::serve(&dist()?, &dbs.path().join("b.db"), &args)?;
    let proxy = e2e::proxy::SplitProxy::start(&a.url, &b.url).await?;
    let browser = Browser::start().await?;
    browser.client.goto(&proxy.url).await?;
    notifications_live(&browser).await?;
    browser
        .type_into("trigger-title", "published through B")
        .await?;
    browser.click("trigger-button").await?;
    wait_for_item(&browser, "published through B").await?;
    assert_eq!(metric(&b, "notify_hub_published_total").await?, 1.0);
    assert_eq!(metric(&a, "notify_hub_published_total").await?, 0.0);
    assert_eq!(
        subscribers(&a, "messages").await?,
        1,
        "the page streams from A"
    );
    assert_eq!(subscribers(&b, "messages").await?, 0);
    browser.close().await
}

/// At the default heartbeat (15 s), a server that freezes (SIGSTOP: the socket stays open,
/// nothing more arrives) is noticed within 5 s, because the clock ticks every second and
/// the page's silence limit (3 s) is not loosened by the slow heartbeat; once the server
/// runs again, the page is live again.
#[tokio::test]
async fn at_the_default_heartbeat_a_frozen_server_is_noticed_within_five_seconds(
) -> anyhow::Result<()> {
    let db = tempfile::tempdir()?;
    let server = ServerProcess::serve(&dist()?, &db.path().join("hub.db"), &[])?;
    let browser = Browser::start().await?;
    browser.client.goto(&server.url).await?;
    notifications_live(&browser).await?;
    browser
        .wait_text("clock-state", WAIT, |t| t == "live")
        .await?;

    let pid = server.pid() as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid, with a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let frozen_at = std::time::Instant::now();
    let noticed = browser
        .wait_text("notifications-state", Duration::from_secs(5), |t| {
            t != "live"
        })
        .await;
    let noticed_after = frozen_at.elapsed();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let state = noticed?;
    println!(
        "a frozen server was noticed after {:.1} s (pill: {state})",
        noticed_after.as_secs_f64()
    );
    assert!(noticed_after < Duration::from_secs(5), "{noticed_after:?}");
    notifications_live(&browser).await?;
    browser.close().await
}

/// axe-core's browser bundle, which `scripts/setup.sh --with-test-tools` installs from npm
/// into `HUB_TOOLS` (the scripts set it; `HUB_AXE_JS` may point at another copy).
fn axe_source() -> anyhow::Result<String> {
    let path = std::env::var_os("HUB_AXE_JS")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HUB_TOOLS")
                .map(|tools| Path::new(&tools).join("axe/node_modules/axe-core/axe.min.js"))
        })
        .ok_or_else(|| {
            anyhow::anyhow!(
                "neither HUB_AXE_JS nor HUB_TOOLS is set: run scripts/test.sh, or source scripts/env.sh first"
            )
        })?;
    std::fs::read_to_string(&path).map_err(|err| {
        anyhow::anyhow!(
            "cannot read axe-core at {} ({err}): run scripts/setup.sh --with-test-tools",
            path.display()
        )
    })
}

/// From a phone's 320 px to a desktop's 1920 px, in light and dark mode, with long
/// notifications listed: the page never scrolls sideways, and axe-core finds no
/// accessibility violation (contrast, names, landmarks, …) in the running app.
#[tokio::test]
async fn the_page_fits_every_width_and_has_no_accessibility_violations() -> anyhow::Result<()> {
    let db = tempfile::tempdir()?;
    let server = ServerProcess::serve(&dist()?, &db.path().join("hub.db"), &[])?;
    for (stream, title, level) in [
        (
            "alerts.disk-space-on-a-host-with-a-long-name",
            "Disk almost full",
            "warning",
        ),
        ("messages", "Deploy finished", "success"),
        (
            "messages",
            "Disk almost full on a-host-with-a-very-long-name-that-does-not-break",
            "warning",
        ),
        ("messages", "Build failed", "error"),
    ] {
        let response = reqwest::Client::new()
            .post(format!("{}/api/notifications", server.url))
            .json(&serde_json::json!({"stream": stream, "title": title, "level": level, "body": "x".repeat(120)}))
            .send()
            .await?;
        assert!(response.status().is_success());
    }
    let axe = axe_source()?;
    let browser = Browser::start().await?;
    browser.client.goto(&server.url).await?;
    wait_for_item(&browser, "Build failed").await?;
    let mut checked = Vec::new();
    for scheme in ["light", "dark"] {
        browser
            .devtools(
                "Emulation.setEmulatedMedia",
                serde_json::json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
            )
            .await?;
        for width in [320, 375, 768, 1280, 1920] {
            browser
                .devtools(
                    "Emulation.setDeviceMetricsOverride",
                    serde_json::json!({"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": width < 600}),
                )
                .await?;
            notifications_live(&browser).await?;
            // A phone's browser widens its layout viewport to whatever overflows, so the
            // page's width is held against the screen's, not the window's.
            let page = browser
                .client
                .execute("return document.documentElement.scrollWidth;", vec![])
                .await?
                .as_u64()
                .unwrap_or(u64::MAX);
            assert!(
                page <= width,
                "{scheme}, {width} px: the page is {page} px wide, it scrolls sideways"
            );
            let violations = browser
                .client
                .execute_async(
                    &format!(
                        "{axe}\n;const done = arguments[arguments.length - 1];\
                         axe.run(document).then(r => done(r.violations.map(v =>\
                           v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))));"
                    ),
                    vec![],
                )
                .await?;
            assert_eq!(
                violations.as_array().map(Vec::len),
                Some(0),
                "{scheme}, {width} px: {violations}"
            );
            checked.push(format!("{scheme} {width}"));
        }
    }
    println!(
        "no sideways scroll and 0 axe-core violations at: {}",
        checked.join(", ")
    );
    browser.close().await
}

/// Waits until exactly one listed notification contains each of `titles`.
async fn each_listed_once(browser: &Browser, titles: &[String]) -> anyhow::Result<()> {
    eventually("each notification listed once", WAIT, || async {
        let items = items(browser).await?;
        let counts: Vec<usize> = titles
            .iter()
            .map(|title| {
                items
                    .iter()
                    .filter(|item| item.contains(title.as_str()))
                    .count()
            })
            .collect();
        anyhow::ensure!(
            counts.iter().all(|&n| n <= 1),
            "listed twice: {counts:?} for {titles:?}"
        );
        Ok(counts.iter().all(|&n| n == 1).then_some(()))
    })
    .await
}

/// The page in real Chromium through the fault proxy, at the default settings: a slow
/// jittery link, a blackhole and a half-open link. Each time the pill says what the link
/// is doing, and the list ends with every notification published meanwhile, once.
#[tokio::test]
async fn through_a_slow_a_cut_and_a_half_open_link_the_pill_tells_the_truth_and_the_list_ends_complete(
) -> anyhow::Result<()> {
    through_faults(&[]).await
}

/// The same with the notifications in Redis.
#[tokio::test]
async fn on_redis_through_a_slow_a_cut_and_a_half_open_link_the_list_ends_complete(
) -> anyhow::Result<()> {
    let (url, prefix) = (e2e::redis::shared_url(), e2e::redis::unique_prefix());
    through_faults(&["--redis", &url, "--redis-prefix", &prefix]).await
}

/// The page through the fault proxy with the server started with `args`.
async fn through_faults(args: &[&str]) -> anyhow::Result<()> {
    use e2e::fault_proxy::{FaultProxy, Faults};
    let db = tempfile::tempdir()?;
    let server = ServerProcess::serve(&dist()?, &db.path().join("hub.db"), args)?;
    let proxy = FaultProxy::start(server.addr.parse()?).await?;
    proxy.set(Faults {
        latency: Duration::from_millis(200),
        jitter: Duration::from_millis(100),
        ..Faults::default()
    });
    let browser = Browser::start().await?;
    let started = std::time::Instant::now();
    browser.client.goto(&proxy.url()).await?;
    notifications_live(&browser).await?;
    let loaded = started.elapsed();
    let publish = |phase: &'static str| {
        let server = &server;
        async move {
            let mut titles = Vec::new();
            for n in 0..5 {
                let title = format!("{phase}-{n}");
                server.publish("messages", &title).await?;
                titles.push(title);
            }
            anyhow::Ok(titles)
        }
    };
    let slow = publish("slow").await?;
    each_listed_once(&browser, &slow).await?;

    // A blackhole: the pill leaves `live` within 5 s, and the page is back, complete,
    // once the link heals.
    proxy.set(Faults {
        blackhole: true,
        ..Faults::default()
    });
    let cut = std::time::Instant::now();
    let during = browser
        .wait_text("notifications-state", Duration::from_secs(5), |t| {
            t != "live"
        })
        .await?;
    let noticed_cut = cut.elapsed();
    let held = publish("held").await?;
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(cut.elapsed())).await;
    assert_ne!(
        browser.text("notifications-state").await,
        "live",
        "live in a blackhole"
    );
    proxy.set(Faults::default());
    let healed = std::time::Instant::now();
    notifications_live(&browser).await?;
    each_listed_once(&browser, &held).await?;
    let back = healed.elapsed();

    // Half-open: the open connection passes nothing, ever; new ones work.
    proxy.freeze_open();
    let frozen = std::time::Instant::now();
    browser
        .wait_text("notifications-state", Duration::from_secs(5), |t| {
            t != "live"
        })
        .await?;
    let noticed_freeze = frozen.elapsed();
    let stranded = publish("stranded").await?;
    notifications_live(&browser).await?;
    each_listed_once(&browser, &stranded).await?;
    let moved_on = frozen.elapsed();
    each_listed_once(&browser, &[slow, held].concat()).await?;
    println!(
        "through the fault proxy: loaded and live in {loaded:?} at 200 ± 100 ms; a blackhole \
         noticed after {noticed_cut:?} (pill: {during}), live and complete {back:?} after it \
         healed; a half-open link noticed after {noticed_freeze:?}, live again on a new \
         connection and complete {moved_on:?} after the freeze"
    );
    browser.close().await
}

/// Over HTTPS (HTTP/2) on a name that is not `localhost`: the page is a secure context, so
/// its tabs share one connection (Web Locks), and it holds more than six streams to the
/// host at once, all live, which HTTP/1.1's six connections per host could not.
#[tokio::test]
async fn over_https_on_a_named_host_a_page_holds_eight_live_streams_and_tabs_share_one(
) -> anyhow::Result<()> {
    const STREAMS: usize = 8;
    let dir = tempfile::tempdir()?;
    let key = rcgen::generate_simple_self_signed(vec!["hub.test".into(), "127.0.0.1".into()])?;
    let (cert, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, key.cert.pem())?;
    std::fs::write(&key_file, key.key_pair.serialize_pem())?;
    let server = ServerProcess::serve(
        &dist()?,
        &dir.path().join("hub.db"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key_file.to_str().unwrap(),
        ],
    )?;
    let port = server
        .addr
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(key.cert.pem().as_bytes())?)
        .build()?;
    let streams_open = || async {
        let page = (client.get(format!("{}/metrics", server.url)).send().await?)
            .text()
            .await?;
        let value = page
            .lines()
            .find_map(|line| line.strip_prefix("notify_hub_streams_open "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(-1.0);
        anyhow::Ok(value)
    };
    let browser = Browser::start_with(&["--host-resolver-rules=MAP hub.test 127.0.0.1"]).await?;
    let page = format!("https://hub.test:{port}/");
    browser.client.goto(&page).await?;
    notifications_live(&browser).await?;
    let context = browser
        .client
        .execute(
            "return [window.isSecureContext, typeof navigator.locks, \
             performance.getEntriesByType('navigation')[0].nextHopProtocol]",
            vec![],
        )
        .await?;
    assert_eq!(
        context,
        serde_json::json!([true, "object", "h2"]),
        "{context}"
    );

    // Eight streams of the page's own, beside the app's: all open and live at once.
    let app_streams = streams_open().await?;
    browser
        .client
        .execute(
            "window.got = {}; for (let n = 0; n < arguments[0]; n++) { \
               const s = new EventSource('/events?stream=many-' + n); \
               s.onmessage = (e) => { window.got[n] = JSON.parse(e.data).title; }; }",
            vec![STREAMS.into()],
        )
        .await?;
    eventually("eight more streams open", WAIT, || async {
        Ok((streams_open().await? >= app_streams + STREAMS as f64).then_some(()))
    })
    .await?;
    for n in 0..STREAMS {
        let response = client
            .post(format!("{}/api/notifications", server.url))
            .json(&serde_json::json!({"stream": format!("many-{n}"), "title": format!("to {n}")}))
            .send()
            .await?;
        anyhow::ensure!(response.status() == 201, "publish: {}", response.status());
    }
    let got = eventually("a notification on each of the eight", WAIT, || async {
        let got = browser.client.execute("return window.got", vec![]).await?;
        let all = (0..STREAMS).all(|n| got.get(n.to_string()).is_some());
        Ok(all.then_some(got))
    })
    .await?;
    for n in 0..STREAMS {
        assert_eq!(got[n.to_string()], format!("to {n}"));
    }

    // A second tab joins the first's connection: no new stream on the server.
    let before = streams_open().await?;
    let tab = browser.client.new_window(true).await?.handle;
    browser.client.switch_to_window(tab).await?;
    browser.client.goto(&page).await?;
    notifications_live(&browser).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        streams_open().await?,
        before,
        "the second tab shares the first's connection"
    );
    println!(
        "over HTTPS (h2) on hub.test: a secure context with Web Locks; {STREAMS} streams of \
         the page's own live beside the app's {app_streams}; a second tab added no stream"
    );
    browser.close().await
}

/// Serves `page` as HTML to every request on a port of its own: a site of another origin
/// than the hub's (the hub's own server would give it the hub's policy).
async fn another_site(page: String) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let page = page.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut head = [0u8; 4096];
                let _ = socket.read(&mut head).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    Ok(url)
}

/// The app runs under its Content-Security-Policy with no violation; a page of another
/// site subscribes to the hub and reads its history, but its publishes are refused by the
/// browser (a JSON publish at the preflight; a form-like trigger by the hub).
#[tokio::test]
async fn the_app_runs_under_its_policy_and_another_sites_page_reads_but_cannot_publish(
) -> anyhow::Result<()> {
    let db = tempfile::tempdir()?;
    let server = ServerProcess::serve(&dist()?, &db.path().join("hub.db"), &[])?;
    let browser = Browser::start().await?;
    browser
        .devtools(
            "Page.addScriptToEvaluateOnNewDocument",
            serde_json::json!({"source": "window.violations = [];\
                document.addEventListener('securitypolicyviolation',\
                  e => window.violations.push(e.violatedDirective + ' ' + e.blockedURI));"}),
        )
        .await?;
    browser.client.goto(&server.url).await?;
    notifications_live(&browser).await?;
    let violations = browser
        .client
        .execute("return window.violations", vec![])
        .await?;
    assert_eq!(
        violations,
        serde_json::json!([]),
        "the app broke its own policy"
    );
    // An injected inline script does not run, and the listener sees the violation.
    let injected = browser
        .client
        .execute(
            "const s = document.createElement('script');\
             s.textContent = 'window.injected = true';\
             document.body.appendChild(s);\
             return window.injected === true ? 'ran' : 'refused';",
            vec![],
        )
        .await?;
    let seen = eventually("the injected script's violation", WAIT, || async {
        let violations = browser
            .client
            .execute("return window.violations", vec![])
            .await?;
        Ok((violations != serde_json::json!([])).then_some(violations))
    })
    .await?;
    println!("the app under its policy: no violation; an injected script {injected}: {seen}");
    assert_eq!(injected, "refused");

    let hub = &server.url;
    let page = format!(
        "<!doctype html><title>another site</title><script>\
         window.got = []; window.publish = 'pending'; window.trigger = 'pending';\
         window.source = new EventSource('{hub}/events?stream=elsewhere');\
         source.onmessage = e => got.push(JSON.parse(e.data).title);\
         fetch('{hub}/api/notifications?stream=elsewhere').then(r => r.json())\
           .then(h => window.history_read = h.notifications.length, e => window.history_read = String(e));\
         window.tryPublish = () => fetch('{hub}/api/notifications', {{method: 'POST',\
             headers: {{'content-type': 'application/json'}},\
             body: JSON.stringify({{stream: 'elsewhere', title: 'from another site'}})}})\
           .then(r => window.publish = 'answered ' + r.status, e => window.publish = 'refused: ' + e);\
         window.tryTrigger = () => fetch('{hub}/trigger?stream=elsewhere', {{method: 'POST'}})\
           .then(r => window.trigger = 'answered ' + r.status, e => window.trigger = 'refused: ' + e);\
         </script>"
    );
    let site = another_site(page).await?;
    browser.client.goto(&format!("{site}/")).await?;
    source_open(&browser, "the other site's EventSource").await?;
    server.publish("elsewhere", "from the hub").await?;
    eventually("the hub's notification on the other site", WAIT, || async {
        let got = browser.client.execute("return got", vec![]).await?;
        Ok((got == serde_json::json!(["from the hub"])).then_some(()))
    })
    .await?;
    browser
        .client
        .execute("tryPublish(); tryTrigger();", vec![])
        .await?;
    let outcome = |name: &'static str| {
        let browser = &browser;
        async move {
            eventually(name, WAIT, || async {
                let value = browser
                    .client
                    .execute(&format!("return window.{name}"), vec![])
                    .await?;
                Ok((value != "pending").then_some(value))
            })
            .await
        }
    };
    let (publish, trigger) = (outcome("publish").await?, outcome("trigger").await?);
    let history_read = browser
        .client
        .execute("return window.history_read", vec![])
        .await?;
    println!(
        "a page of {site}: subscribed and read a history of {history_read}; its publish: \
         {publish}; its trigger: {trigger}"
    );
    assert_eq!(
        history_read, 0,
        "the history was read (before anything was published)"
    );
    assert!(
        publish.as_str().unwrap_or_default().starts_with("refused"),
        "{publish}"
    );
    assert!(
        trigger.as_str().unwrap_or_default().starts_with("refused"),
        "{trigger}"
    );
    let stored: common::History =
        reqwest::get(format!("{}/api/notifications?stream=elsewhere", server.url))
            .await?
            .json()
            .await?;
    assert_eq!(
        stored.notifications.len(),
        1,
        "nothing published from the other site"
    );
    browser.close().await
}

/// A token minted by the CLI with the test's secret, valid for `ttl`.
fn mint(secret: &str, ttl: &str) -> anyhow::Result<String> {
    let output = Command::new(server_bin())
        .args([
            "token",
            "--publish",
            "alerts.*",
            "--subscribe",
            "alerts.*",
            "--ttl",
            ttl,
        ])
        .env("NOTIFY_HUB_JWT_SECRET", secret)
        .output()?;
    anyhow::ensure!(output.status.success(), "{output:?}");
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// Gives `token` to the page's token form, once it shows.
async fn give_token(browser: &Browser, token: &str) -> anyhow::Result<()> {
    eventually("the token form", WAIT, || async {
        Ok(browser.find("token-input").await.ok())
    })
    .await?;
    browser.type_into("token-input", token).await?;
    browser.click("token-save").await
}

/// A page that follows a private stream asks for a token, goes live with it, and when the
/// token expires (the server says `token-expired`, then refuses the reconnection) asks
/// again; the new token brings the stream back at once, with what was published meanwhile.
#[tokio::test]
async fn a_page_renews_an_expired_token_and_misses_nothing() -> anyhow::Result<()> {
    let secret = "e2e-renewal-secret-of-32-bytes!!";
    let db = tempfile::tempdir()?;
    let server = ServerProcess::serve(
        &dist()?,
        &db.path().join("hub.db"),
        &["--jwt-secret", secret, "--private-stream", "alerts.*"],
    )?;
    let publisher = mint(secret, "1h")?;
    let publish = |title: &'static str| {
        let request = reqwest::Client::new()
            .post(format!("{}/api/notifications", server.url))
            .bearer_auth(&publisher)
            .json(&serde_json::json!({"stream": "alerts.ops", "title": title}));
        async move { anyhow::Ok(request.send().await?.error_for_status()?) }
    };
    let browser = Browser::start().await?;
    browser
        .client
        .goto(&format!("{}/?stream=alerts.ops", server.url))
        .await?;
    give_token(&browser, &mint(secret, "3s")?).await?;
    notifications_live(&browser).await?;
    publish("while the first token held").await?;
    wait_for_item(&browser, "while the first token held").await?;
    // At its expiry (3 s, and the 5 s the hub allows for clock skew) the stream is cut
    // and the reconnection refused: the page says so and asks again.
    let refused = browser
        .wait_text("notifications-state", Duration::from_secs(30), |t| {
            t.contains("not allowed")
        })
        .await?;
    publish("while the page had no token").await?;
    let renewed = std::time::Instant::now();
    give_token(&browser, &mint(secret, "1h")?).await?;
    notifications_live(&browser).await?;
    wait_for_item(&browser, "while the page had no token").await?;
    println!(
        "after its token expired the page said `{refused}`; with a new one it was live and \
         caught up {:?} later",
        renewed.elapsed()
    );
    browser.close().await
}

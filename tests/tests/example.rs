//! The example app (`examples/bell`), as a Leptos developer would try it: built with trunk
//! and served by a real server, in real Chromium, it shows the notifications of its two
//! selectors (`messages`, `alerts.*`) live, with their unread count, and nothing else.

use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context};
use e2e::{profile_dir, workspace, Browser, ServerProcess};

const WAIT: Duration = Duration::from_secs(20);

/// Builds the example (a developer's debug build, into this test run's target folder, so
/// the dependencies already compiled are reused) into `dist`.
fn build_example(dist: &std::path::Path) -> anyhow::Result<()> {
    let target_dir = profile_dir()
        .parent()
        .context("the profile folder lives in the target folder")?
        .to_path_buf();
    let output = Command::new("trunk")
        .args(["build", "--dist"])
        .arg(dist)
        .arg("examples/bell/index.html")
        .current_dir(workspace())
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("TRUNK_OFFLINE", "true")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .env("NO_COLOR", "true")
        .output()
        .context("cannot start `trunk`: run scripts/setup.sh, which installs it")?;
    ensure!(
        output.status.success(),
        "trunk build of the example failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn the_example_app_shows_its_streams_live() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let dist = dir.path().join("dist");
    build_example(&dist)?;
    let server = ServerProcess::serve(&dist, &dir.path().join("hub.db"), &[])?;
    server.publish("messages", "from history").await?;
    let browser = Browser::start().await?;
    browser.client.goto(&format!("{}/", server.url)).await?;
    browser.wait_text("state", WAIT, |t| t == "live").await?;
    for (stream, title) in [
        ("messages", "hello"),
        ("other", "not shown"),
        ("alerts.disk", "disk full"),
    ] {
        server.publish(stream, title).await?;
    }
    browser.wait_text("unread", WAIT, |t| t == "2").await?;
    let items = browser.read_all("[data-testid=item]", "innerText").await?;
    assert_eq!(
        items,
        [
            "alerts.disk: disk full",
            "messages: hello",
            "messages: from history"
        ]
    );
    browser.close().await
}

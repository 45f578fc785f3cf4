//! The development loop as a Leptos developer runs it: `trunk serve` from the root of a
//! copy of the workspace, its proxy pointed at a real server. The copy lets a test edit a
//! frontend source without touching the checkout.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context};

use crate::{eventually, profile_dir, workspace};

/// What a copy of the workspace leaves out: builds, the app trunk will build anew, the
/// store a local run made and git's history.
const NOT_COPIED: &[&str] = &["target", "dist", "data", ".git"];

/// Where the checkout's `Trunk.toml` sends the app's calls: the server's default address.
const DEFAULT_BACKEND: &str = "http://127.0.0.1:8080";

/// A copy of the workspace in a temporary folder.
pub struct WorkspaceCopy {
    dir: tempfile::TempDir,
}

impl WorkspaceCopy {
    /// Copies the checkout (sources, manifests, `index.html`, `Trunk.toml`, scripts) as it
    /// is on disk now, uncommitted edits included.
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        copy_tree(&workspace(), dir.path())?;
        Ok(Self { dir })
    }

    /// The copy's root.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces every `from` with `to` in the copy's file `path` (relative to the root),
    /// failing if `from` is not there.
    pub fn edit(&self, path: &str, from: &str, to: &str) -> anyhow::Result<()> {
        let file = self.root().join(path);
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {path}"))?;
        ensure!(text.contains(from), "{path} has no `{from}`");
        std::fs::write(&file, text.replace(from, to))?;
        Ok(())
    }
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if NOT_COPIED.iter().any(|skip| name == *skip) {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// `trunk serve` running in a [`WorkspaceCopy`], killed when dropped.
pub struct TrunkServe {
    /// `http://127.0.0.1:PORT`, where trunk serves the app.
    pub url: String,
    child: Mutex<Child>,
    log: Arc<Mutex<String>>,
}

impl TrunkServe {
    /// Points the copy's `Trunk.toml` proxies at `backend` (a server's URL) and starts
    /// `trunk serve` on a free port, offline, building into this test's own cargo target
    /// folder (so the dependencies the test run already compiled are reused). Returns once
    /// the first build is served.
    pub async fn start(copy: &WorkspaceCopy, backend: &str) -> anyhow::Result<Self> {
        copy.edit("Trunk.toml", DEFAULT_BACKEND, backend)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let target_dir = profile_dir()
            .parent()
            .context("the profile folder lives in the target folder")?
            .to_path_buf();
        let mut child = Command::new("trunk")
            .args(["serve", "--offline", "--no-error-reporting", "--port"])
            .arg(port.to_string())
            .current_dir(copy.root())
            .env("CARGO_TARGET_DIR", &target_dir)
            // A developer's build: not through the clippy-driver that scripts/test.sh sets.
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env_remove("CLIPPY_ARGS")
            // trunk 0.21 takes only `true` or `false` here.
            .env("NO_COLOR", "true")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start `trunk`: run scripts/setup.sh, which installs it")?;
        let log = Arc::new(Mutex::new(String::new()));
        crate::drain(child.stdout.take().expect("piped"), log.clone());
        crate::drain(child.stderr.take().expect("piped"), log.clone());
        let trunk = Self {
            url: format!("http://127.0.0.1:{port}"),
            child: Mutex::new(child),
            log,
        };
        // The first build compiles the app (in debug) before anything is served.
        trunk.wasm_name(Duration::from_secs(600)).await?;
        Ok(trunk)
    }

    /// The hashed name of the wasm file the served page loads, once there is one.
    pub async fn wasm_name(&self, limit: Duration) -> anyhow::Result<String> {
        self.wasm_name_other_than("", limit).await
    }

    /// The hashed name of the wasm file the served page loads, once it is not `old`.
    pub async fn wasm_name_other_than(&self, old: &str, limit: Duration) -> anyhow::Result<String> {
        let page = format!("{}/", self.url);
        let name = eventually("trunk to serve a built page", limit, || async {
            if let Some(status) = self.child.lock().expect("not poisoned").try_wait()? {
                anyhow::bail!("trunk exited ({status})");
            }
            let Ok(response) = reqwest::get(&page).await else {
                return Ok(None);
            };
            if !response.status().is_success() {
                return Ok(None);
            }
            let html = response.text().await?;
            let name = wasm_in(&html);
            Ok(name.filter(|name| name != old))
        })
        .await;
        name.with_context(|| format!("trunk's log:\n{}", self.log()))
    }

    /// Everything trunk has printed so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for TrunkServe {
    fn drop(&mut self) {
        let child = self
            .child
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        child.kill().ok();
        child.wait().ok();
    }
}

/// The `…_bg.wasm` file an `index.html` that trunk wrote refers to.
fn wasm_in(html: &str) -> Option<String> {
    let end = html.find("_bg.wasm")? + "_bg.wasm".len();
    let start = html[..end].rfind(['/', '"', '\''])? + 1;
    Some(html[start..end].to_owned())
}

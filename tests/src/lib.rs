//! The test harness: the real `server` binary as a process ([`ServerProcess`]) and a real
//! Chromium driven through chromedriver ([`Browser`]). The end-to-end tests in `tests/` use
//! both; the server crate's CLI tests use [`ServerProcess`].
//!
//! `scripts/test.sh` builds both first; `HUB_SERVER_BIN` and `HUB_DIST` may point elsewhere.
//! Tests of the Redis store start a real `redis-server` through [`redis`]; the browser
//! test of several instances puts [`proxy`] in front of them, and the fault tests put
//! [`fault_proxy`] between the parts. The development loop's test
//! runs `trunk serve` in a copy of the workspace through [`trunk`].

pub mod fault_proxy;
pub mod proxy;
pub mod redis;
pub mod trunk;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

/// The workspace root (this crate lives in `tests/`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `server` binary under test: `HUB_SERVER_BIN`, or the one cargo built beside this test
/// (`<target dir>/debug/deps/<test>` → `<target dir>/debug/server`), so a `CARGO_TARGET_DIR`
/// set anywhere is respected.
pub fn server_bin() -> PathBuf {
    std::env::var_os("HUB_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| profile_dir().join("server"))
}

/// The folder of the binaries of the profile this test was built with (`target/debug`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let deps = exe.parent().expect("a test binary lives in deps/");
    deps.parent()
        .expect("deps/ lives in the profile folder")
        .to_path_buf()
}

/// The built web app (`trunk build --release`).
pub fn dist() -> anyhow::Result<PathBuf> {
    let dist = std::env::var_os("HUB_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("dist"));
    if !dist.join("index.html").is_file() {
        bail!(
            "no built app in {}: run `trunk build --release` first",
            dist.display()
        );
    }
    Ok(dist)
}

/// Polls `probe` every 50 ms until it yields a value, failing after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What follows `marker` on the first line of a process's `output` that has it (where a
/// server says which port it took), and the whole output so far, which grows as a thread
/// drains the rest (so the process never blocks on a full pipe).
fn announced(
    output: impl Read + Send + 'static,
    marker: &str,
) -> anyhow::Result<(String, Arc<Mutex<String>>)> {
    let log = Arc::new(Mutex::new(String::new()));
    let mut lines = BufReader::new(output).lines();
    let found = loop {
        let line = lines.next().context("no such line")??;
        push_line(&log, &line);
        if let Some((_, rest)) = line.split_once(marker) {
            break rest.trim().to_owned();
        }
    };
    drain_lines(lines, log.clone());
    Ok((found, log))
}

/// Appends every line of a process's `output` to `log`, on a thread of its own, so the
/// process never blocks on a full pipe.
fn drain(output: impl Read + Send + 'static, log: Arc<Mutex<String>>) {
    drain_lines(BufReader::new(output).lines(), log);
}

/// [`drain`] for output whose first lines were already read.
fn drain_lines(
    lines: impl Iterator<Item = std::io::Result<String>> + Send + 'static,
    log: Arc<Mutex<String>>,
) {
    std::thread::spawn(move || {
        lines
            .map_while(Result::ok)
            .for_each(|l| push_line(&log, &l))
    });
}

fn push_line(log: &Mutex<String>, line: &str) {
    let mut log = log
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    log.push_str(line);
    log.push('\n');
}

/// The log filter test servers run with: `info`, and a line per request.
pub const REQUEST_LOGS: &str = "info,server::middleware=debug,tower_http::trace=debug";

/// A running `server serve` process, killed (SIGKILL) when dropped. Shared by every test
/// that needs the real binary: the end-to-end tests here and the server's CLI tests.
pub struct ServerProcess {
    /// `http://127.0.0.1:PORT`, as the server reported it.
    pub url: String,
    /// `127.0.0.1:PORT`: pass it to [`ServerProcess::start`] to restart on the same port.
    pub addr: String,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl ServerProcess {
    /// Publishes `title` to `stream` through the HTTP API.
    pub async fn publish(&self, stream: &str, title: &str) -> anyhow::Result<()> {
        reqwest::Client::new()
            .post(format!("{}/api/notifications", self.url))
            .json(&serde_json::json!({"stream": stream, "title": title}))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Starts `bin serve` on `addr` (`127.0.0.1:0`: a port the server picks itself and
    /// reports, so no other process can take it first) serving `assets`, with the SQLite
    /// file `db` and extra `args`, and waits until it says where it listens.
    pub fn start(
        bin: &Path,
        addr: &str,
        assets: &Path,
        db: &Path,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_logging(bin, addr, assets, db, args, REQUEST_LOGS)
    }

    /// [`ServerProcess::start`] with the log filter `rust_log` (`RUST_LOG`), e.g. `debug`
    /// to check what the most talkative level writes.
    pub fn start_logging(
        bin: &Path,
        addr: &str,
        assets: &Path,
        db: &Path,
        args: &[&str],
        rust_log: &str,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(bin)
            .args(["serve", "--addr", addr, "--assets"])
            .arg(assets)
            .arg("--db")
            .arg(db)
            .args(args)
            .env("RUST_LOG", rust_log)
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let log = child.stderr.take().expect("stderr is piped");
        let (url, log) =
            announced(log, "listening on ").context("the server exited before listening")?;
        let addr = url.trim_start_matches("http://").to_owned();
        Ok(Self {
            url,
            addr,
            child,
            log,
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The workspace's debug `server` binary serving the API and streams only (no web app)
    /// on `addr`, with the SQLite file `db` and extra `args`.
    pub fn api_only(addr: &str, db: &Path, args: &[&str]) -> anyhow::Result<Self> {
        Self::start(&server_bin(), addr, Path::new("/nonexistent"), db, args)
    }

    /// The workspace's debug `server` binary (or `HUB_SERVER_BIN`) on a free port.
    pub fn serve(assets: &Path, db: &Path, args: &[&str]) -> anyhow::Result<Self> {
        Self::start(&server_bin(), "127.0.0.1:0", assets, db, args)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Headless Chromium under a chromedriver of our own, on a free port.
pub struct Browser {
    pub client: Client,
    driver: Child,
}

impl Browser {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(&[]).await
    }

    /// [`Browser::start`] with extra Chromium flags (`--host-resolver-rules=…` to reach
    /// the server under a name of the test's own).
    pub async fn start_with(flags: &[&str]) -> anyhow::Result<Self> {
        let chromedriver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        // Port 0: chromedriver picks a free port itself and says which.
        let mut driver = Command::new(&chromedriver)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {chromedriver}"))?;
        let log = driver.stdout.take().expect("stdout is piped");
        let port = announced(log, "started successfully on port ")
            .context("chromedriver exited before it started")?
            .0
            .trim_end_matches('.')
            .parse::<u16>()?;
        let mut options = serde_json::json!({
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1100,900"
            ]
        });
        for flag in flags {
            options["args"]
                .as_array_mut()
                .expect("args is a list")
                .push((*flag).into());
        }
        if Path::new("/usr/bin/chromium").exists() {
            options["binary"] = "/usr/bin/chromium".into();
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        // The HTTPS tests' certificates are made at test time, signed by nobody.
        caps.insert("acceptInsecureCerts".into(), true.into());
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(err) => return Err(err).context("cannot reach chromedriver"),
            }
        };
        Ok(Self { client, driver })
    }

    /// The element with `data-testid=id`.
    pub async fn find(&self, id: &str) -> anyhow::Result<Element> {
        let locator = format!("[data-testid={id}]");
        Ok(self.client.find(Locator::Css(&locator)).await?)
    }

    /// Clicks the element with `data-testid=id`.
    pub async fn click(&self, id: &str) -> anyhow::Result<()> {
        self.find(id).await?.click().await?;
        Ok(())
    }

    /// Types `text` into the field with `data-testid=id`.
    pub async fn type_into(&self, id: &str, text: &str) -> anyhow::Result<()> {
        self.find(id).await?.send_keys(text).await?;
        Ok(())
    }

    /// The text of the element with `data-testid=id`, or "" if there is none yet.
    pub async fn text(&self, id: &str) -> String {
        match self
            .client
            .find(Locator::Css(&format!("[data-testid={id}]")))
            .await
        {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// The values of `property` (`innerText`, `dataset.stream`, …) of every element that
    /// matches `css`, read in one script: a list the page re-renders between finding its
    /// elements and reading them one by one leaves stale references (seen when the demo
    /// counter ticked during a loaded run).
    pub async fn read_all(&self, css: &str, property: &str) -> anyhow::Result<Vec<String>> {
        let values = self
            .client
            .execute(
                "return Array.from(document.querySelectorAll(arguments[0]), \
                 e => arguments[1].split('.').reduce((v, k) => v?.[k], e) ?? '')",
                vec![css.into(), property.into()],
            )
            .await?;
        Ok(serde_json::from_value(values)?)
    }

    /// Waits until `condition` holds for the text of `data-testid=id`; returns that text.
    pub async fn wait_text(
        &self,
        id: &str,
        limit: Duration,
        condition: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let what = format!("[data-testid={id}]");
        eventually(&what, limit, || async {
            let text = self.text(id).await;
            Ok(condition(&text).then_some(text))
        })
        .await
    }

    /// Runs a Chrome DevTools Protocol command on the current tab (through chromedriver),
    /// e.g. `Page.setWebLifecycleState` to freeze it as Chrome does to background tabs.
    pub async fn devtools(&self, command: &str, params: serde_json::Value) -> anyhow::Result<()> {
        self.client
            .issue_cmd(DevTools(
                serde_json::json!({ "cmd": command, "params": params }),
            ))
            .await?;
        Ok(())
    }

    /// Closes the browser session and stops chromedriver.
    pub async fn close(mut self) -> anyhow::Result<()> {
        let closed = self.client.clone().close().await;
        self.driver.kill().ok();
        self.driver.wait().ok();
        closed.map_err(Into::into)
    }
}

/// chromedriver's `goog/cdp/execute` endpoint: a DevTools command on the current tab.
#[derive(Debug)]
struct DevTools(serde_json::Value);

impl fantoccini::wd::WebDriverCompatibleCommand for DevTools {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.0.to_string()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.driver.kill().ok();
    }
}

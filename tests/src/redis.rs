//! A real `redis-server` for the tests: on a free loopback port, with its data in a
//! temporary folder, killed with the test process.
//!
//! Most tests share one Redis per test run ([`shared_url`]): `scripts/test.sh` starts it
//! (the `test-redis` binary) and passes its URL in `HUB_TEST_REDIS`; a test binary run on
//! its own starts one for itself. Each test server keeps its keys under a prefix of its
//! own, so tests sharing a Redis do not see each other's streams. Tests that stop or
//! restart Redis start their own [`RedisServer`].

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, OnceLock};

use anyhow::{bail, Context};

/// A `redis-server` process of a test's own; killed (SIGKILL) when dropped.
pub struct RedisServer {
    /// `redis://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
    dir: tempfile::TempDir,
    durable: bool,
    /// Linux kills the server when the thread that started it ends (`PR_SET_PDEATHSIG`).
    tied_to_thread: bool,
    child: Option<Child>,
}

impl RedisServer {
    /// A Redis that keeps nothing on disk: fast, for tests that do not restart it.
    pub fn start() -> anyhow::Result<Self> {
        Self::launch(false, false)
    }

    /// A Redis with the append-only file fsynced on every write (`appendfsync always`),
    /// as a production setup that promises no loss would run it: what it acknowledged
    /// survives [`RedisServer::kill`] and [`RedisServer::restart`].
    pub fn start_durable() -> anyhow::Result<Self> {
        Self::launch(true, false)
    }

    fn launch(durable: bool, tied_to_thread: bool) -> anyhow::Result<Self> {
        let mut last_error = None;
        // A port found free can be taken by another process before Redis binds it.
        for _ in 0..5 {
            let port = free_port()?;
            let mut server = Self {
                url: format!("redis://127.0.0.1:{port}"),
                port,
                dir: tempfile::tempdir()?,
                durable,
                tied_to_thread,
                child: None,
            };
            match server.restart() {
                Ok(()) => return Ok(server),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.expect("five attempts were made"))
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Starts the server again on the same port with the same data folder, and waits
    /// until it accepts connections (after loading its data).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let mut command = Command::new(redis_server());
        command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--save", "", "--logfile", "", "--daemonize", "no"]);
        if self.durable {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        if self.tied_to_thread {
            // SAFETY: prctl is async-signal-safe, and nothing else runs in the child here.
            unsafe {
                command.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start redis-server")?;
        let output = child.stdout.take().expect("stdout is piped");
        match crate::announced(output, "Ready to accept connections") {
            Ok(_) => {
                self.child = Some(child);
                Ok(())
            }
            Err(_) => {
                child.kill().ok();
                child.wait().ok();
                bail!("redis-server on port {} did not start", self.port)
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `redis-server` to run: `HUB_REDIS_SERVER`, or the one on `PATH`.
fn redis_server() -> PathBuf {
    std::env::var_os("HUB_REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| "redis-server".into())
}

/// A loopback port nobody listens on right now.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The URL of the Redis this test run shares: `HUB_TEST_REDIS`, or one started for this
/// process on first use. That one lives on a thread of its own that never ends, and
/// Linux kills it when the thread (the process) dies: no Redis outlives the tests.
pub fn shared_url() -> String {
    static SHARED: OnceLock<String> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            if let Some(url) = std::env::var("HUB_TEST_REDIS")
                .ok()
                .filter(|u| !u.is_empty())
            {
                return url;
            }
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let started = RedisServer::launch(false, true);
                let url = started.as_ref().map(|s| s.url.clone());
                tx.send(url.map_err(|e| format!("{e:#}"))).ok();
                // Keeps the server (and this thread) alive as long as the process.
                let _server = started;
                loop {
                    std::thread::park();
                }
            });
            match rx.recv() {
                Ok(Ok(url)) => url,
                Ok(Err(err)) => panic!(
                    "{err}: tests need redis-server 6.2 or newer (scripts/setup.sh installs it \
                     on Debian; elsewhere install Redis, or set HUB_REDIS_SERVER or \
                     HUB_TEST_REDIS)"
                ),
                Err(_) => panic!("the thread starting Redis died"),
            }
        })
        .clone()
}

/// A key prefix no other test server in this run uses.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

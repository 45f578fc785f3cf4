//! The servers under test, each a process of its own so that its memory and CPU can be
//! read from `/proc`: our `server`, the raw baseline (this binary's `raw-server`), and
//! better-sse on Node (installed with npm into the tools cache, for benchmarks only).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};

/// Which server a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// notify-hub's `server`, release build.
    Hub,
    /// The raw tokio writer: the physical limit on this machine.
    Raw,
    /// better-sse 0.16 on Node: the peer.
    BetterSse,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hub => "notify-hub",
            Kind::Raw => "raw tokio",
            Kind::BetterSse => "better-sse",
        }
    }

    /// The path that publishes one notification (its body is JSON).
    pub fn publish_path(self) -> &'static str {
        match self {
            Kind::Hub => "/api/notifications",
            Kind::Raw | Kind::BetterSse => "/publish",
        }
    }
}

/// Where to find what the targets need.
#[derive(Clone, Debug)]
pub struct Programs {
    /// Our `server` binary.
    pub hub: PathBuf,
    /// Folder where better-sse is (or gets) installed; `None` skips the peer.
    pub peers: Option<PathBuf>,
}

/// A running target, killed when dropped.
pub struct Target {
    pub kind: Kind,
    pub url: String,
    child: Child,
    _db: Option<tempfile::TempDir>,
}

impl Target {
    /// Starts `kind` and waits until it listens.
    pub fn start(kind: Kind, programs: &Programs, hub_args: &[&str]) -> anyhow::Result<Self> {
        let mut db = None;
        let mut command = match kind {
            Kind::Hub => {
                let dir = tempfile::tempdir()?;
                let mut c = Command::new(&programs.hub);
                c.args([
                    "serve",
                    "--addr",
                    "127.0.0.1:0",
                    "--assets",
                    "/nonexistent",
                    "--db",
                ])
                .arg(dir.path().join("bench.db"))
                // The load generator publishes from one address, far over a client's rate.
                .args(["--publish-rate", "0"])
                .args(hub_args)
                .env("RUST_LOG", "info");
                db = Some(dir);
                c
            }
            Kind::Raw => {
                let mut c = Command::new(std::env::current_exe()?);
                c.arg("raw-server");
                c
            }
            Kind::BetterSse => {
                let peers = programs.peers.as_ref().context("peers are off")?;
                let mut c = Command::new("node");
                c.arg(peers.join("better-sse.mjs"));
                c
            }
        };
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", kind.name()))?;
        // Ours logs to stderr, the others print to stdout.
        let pipe: Box<dyn std::io::Read + Send> = match kind {
            Kind::Hub => Box::new(child.stderr.take().unwrap()),
            _ => Box::new(child.stdout.take().unwrap()),
        };
        let mut lines = BufReader::new(pipe).lines();
        let url = loop {
            let Some(line) = lines.next() else {
                bail!("{} exited before listening", kind.name());
            };
            if let Some((_, url)) = line?.split_once("listening on ") {
                break url.trim().to_owned();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Self {
            kind,
            url,
            child,
            _db: db,
        })
    }

    /// Resident memory of the process, in bytes.
    pub fn rss(&self) -> u64 {
        rss(self.child.id())
    }

    /// The process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// File descriptors the process has open (sockets included).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, Iterator::count)
    }

    /// CPU time the process has used (user + system), in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.child.id())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Resident memory of process `pid`, in bytes.
pub fn rss(pid: u32) -> u64 {
    proc_kib(&format!("/proc/{pid}/status"), "VmRSS:") * 1024
}

/// CPU time process `pid` has used (user + system), in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / per_second
}

/// The number of KiB on the `field` line of a `/proc` file such as `/proc/PID/status` or
/// `/proc/meminfo` (`VmRSS:   1234 kB`); 0 when it cannot be read.
pub fn proc_kib(file: &str, field: &str) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Installs better-sse (npm) and its script into `dir` unless already there.
pub fn install_peers(dir: &Path, script: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("better-sse.mjs"), script)?;
    std::fs::write(
        dir.join("package.json"),
        r#"{"type":"module","private":true}"#,
    )?;
    if dir.join("node_modules/better-sse/package.json").is_file() {
        return Ok(());
    }
    eprintln!(
        "bench: npm install better-sse@0.16.1 into {} (once)",
        dir.display()
    );
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
        .arg(dir)
        .arg("better-sse@0.16.1")
        .status()
        .context("npm is needed for the better-sse peer (or pass --no-peers)")?;
    if !status.success() {
        bail!("npm install better-sse failed");
    }
    Ok(())
}

/// Raises this process's open-file limit to its hard limit (children inherit it): 10,000
/// connections need 10,000 descriptors on each side.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    limit.rlim_cur
}

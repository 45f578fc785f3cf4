//! The load generator split over processes, for more subscribers than one process may hold
//! (here 20,000 open files) or one source address may open (about 28,000 ports towards one
//! server port). The bench starts `bench load-worker` once per share; each worker opens its
//! subscribers from a loopback address of its own and talks with the bench over its stdin
//! and stdout, one line at a time:
//!
//! - worker: `{"connected":N,"failed":M}` once its subscribers have connected or failed;
//! - bench: `count`, later `stop`: events and latencies count between the two;
//! - worker: its figures as JSON ([`Stats::to_json`]); it exits when its stdin closes.
//!
//! Latency crosses the process boundary as wall-clock time ([`LatencyFrom::Wall`]).

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::load::{self, LatencyFrom, Stats, Subscribe};

/// How long a worker's subscribers may take to connect before it reports what connected.
const CONNECT_LIMIT: Duration = Duration::from_secs(180);

/// One worker's share of the load: the `load-worker` subcommand's arguments.
#[derive(clap::Args, Clone, Debug)]
pub struct Share {
    /// The server to subscribe to.
    #[arg(long)]
    pub addr: SocketAddr,
    /// The loopback address to connect from.
    #[arg(long)]
    pub from: IpAddr,
    /// How many subscribers.
    #[arg(long)]
    pub n: usize,
    /// The path (with query) each subscribes to.
    #[arg(long)]
    pub path: String,
    /// The interval of the clock the path asks for beside notifications (`clock_ms`).
    #[arg(long)]
    pub ticks_every_ms: Option<u64>,
}

/// The worker process: opens its share, then answers the bench's commands.
pub async fn run(share: Share) -> anyhow::Result<()> {
    let stats = Stats::new();
    let subscribe = Subscribe {
        from: Some(share.from),
        ticks_every: share.ticks_every_ms.map(Duration::from_millis),
        ..Subscribe::to(share.path)
    };
    let connections = load::open(
        share.addr,
        share.n,
        subscribe,
        LatencyFrom::Wall,
        stats.clone(),
        CONNECT_LIMIT,
    )
    .await;
    let figures = stats.to_json();
    println!(
        "{}",
        serde_json::json!({ "connected": figures["connected"], "failed": figures["failed"] })
    );
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    while let Some(command) = commands.next_line().await? {
        match command.trim() {
            "count" => stats.count(true),
            "stop" => {
                stats.count(false);
                println!("{}", stats.to_json());
            }
            other => bail!("load-worker: unknown command {other:?}"),
        }
    }
    drop(connections);
    Ok(())
}

/// A running worker, as the bench drives it; killed when dropped.
pub struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    /// Starts a worker on `share` (it begins connecting at once).
    pub fn start(share: &Share) -> anyhow::Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .arg("load-worker")
            .args(["--addr", &share.addr.to_string()])
            .args(["--from", &share.from.to_string()])
            .args(["--n", &share.n.to_string()])
            .args(["--path", &share.path]);
        if let Some(ms) = share.ticks_every_ms {
            command.args(["--ticks-every-ms", &ms.to_string()]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start a load worker")?;
        let stdin = child.stdin.take().context("the worker's stdin")?;
        let stdout = child.stdout.take().context("the worker's stdout")?;
        Ok(Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Waits until the worker's subscribers have connected (or failed); how many did each.
    pub async fn connected(&mut self) -> anyhow::Result<(u64, u64)> {
        let counts = self.answer().await?;
        let count = |name: &str| counts[name].as_u64().unwrap_or(0);
        Ok((count("connected"), count("failed")))
    }

    /// Starts counting events.
    pub async fn count(&mut self) -> anyhow::Result<()> {
        self.stdin.write_all(b"count\n").await?;
        Ok(())
    }

    /// Stops counting and adds the worker's figures to `stats`.
    pub async fn stop(&mut self, stats: &Arc<Stats>) -> anyhow::Result<()> {
        self.stdin.write_all(b"stop\n").await?;
        stats.add_json(&self.answer().await?);
        Ok(())
    }

    async fn answer(&mut self) -> anyhow::Result<serde_json::Value> {
        let line = self
            .lines
            .next_line()
            .await?
            .context("a load worker exited early")?;
        Ok(serde_json::from_str(&line)?)
    }
}

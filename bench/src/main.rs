//! The fan-out benchmark. `cargo run --release -p bench` runs every workload against our
//! server, the raw tokio baseline and better-sse, prints the figures as they come, and
//! writes them to `bench/results.md` with charts in `bench/charts/`. `--quick` runs a
//! seconds-long version (small N) that checks that every event arrived.

mod load;
mod raw;
mod report;
mod target;
mod workloads;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use report::Report;
use target::{Kind, Programs, Target};
use workloads::{FanOut, Setup};

/// The fan-out benchmark (see BENCHMARKS.md).
#[derive(Parser)]
#[command(name = "bench")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// A seconds-long run with small N that fails unless every event arrived.
    #[arg(long)]
    quick: bool,
    /// Workloads to run, e.g. `A,C` (default: all of A B C D E F).
    #[arg(long, value_delimiter = ',', default_value = "A,B,C,D,E,F")]
    only: Vec<String>,
    /// Our server binary.
    #[arg(long, default_value = "target/release/server")]
    hub: PathBuf,
    /// Leave out better-sse (no Node or npm needed).
    #[arg(long)]
    no_peers: bool,
    /// Where the Markdown results go.
    #[arg(long, default_value = "bench/results.md")]
    out: PathBuf,
    /// Where the charts go (full runs only).
    #[arg(long, default_value = "bench/charts")]
    charts: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// The raw tokio baseline server (started by the bench itself).
    #[command(hide = true)]
    RawServer,
}

/// Workload F's setups, the reference (SQLite) first.
const SETUPS: [Setup; 3] = [Setup::Sqlite, Setup::Redis(1), Setup::Redis(3)];

/// The sizes of one run.
struct Plan {
    window: Duration,
    clock_ns: Vec<usize>,
    clock_fast: (usize, u64),
    notify: Vec<(usize, u32)>,
    publishers: Vec<usize>,
    storm: (usize, usize),
    idle: usize,
    /// F: subscribers and publishes a second, on each setup.
    instances: Vec<(usize, u32)>,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                window: Duration::from_secs(2),
                clock_ns: vec![50],
                clock_fast: (20, 20),
                notify: vec![(50, 50)],
                publishers: vec![1, 8],
                storm: (20, 50),
                idle: 200,
                instances: vec![(60, 50)],
            }
        } else {
            Self {
                window: Duration::from_secs(10),
                clock_ns: vec![1_000, 2_500, 5_000, 10_000],
                clock_fast: (1_000, 10),
                notify: vec![(1_000, 500), (10_000, 20)],
                publishers: vec![1, 8, 64],
                storm: (1_000, 1_000),
                idle: 10_000,
                instances: vec![(1_000, 50), (1_000, 500)],
            }
        }
    }
}

/// Counts steps and says how far the run has got and how long is left.
struct Progress {
    start: Instant,
    done: usize,
    total: usize,
}

impl Progress {
    fn step(&mut self, what: &str) {
        let elapsed = self.start.elapsed().as_secs_f64();
        let left = if self.done == 0 {
            "estimating".to_owned()
        } else {
            let per = elapsed / self.done as f64;
            format!("~{:.0} s left", per * (self.total - self.done) as f64)
        };
        self.done += 1;
        eprintln!(
            "bench [{}/{} steps, {elapsed:.0} s, {left}] {what}",
            self.done, self.total
        );
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    if let Some(Command::RawServer) = args.command {
        return runtime.block_on(raw::serve());
    }
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let fds = target::raise_fd_limit();
    if !args.hub.is_file() {
        bail!(
            "no server binary at {} (build it with `cargo build --release -p server`)",
            args.hub.display()
        );
    }
    let peers = if args.no_peers || args.quick {
        None
    } else {
        let dir = tools_dir().join("bench-peers");
        target::install_peers(&dir, include_str!("../peers/better-sse.mjs"))?;
        Some(dir)
    };
    let programs = Programs {
        hub: args.hub.clone(),
        peers,
    };
    let mut kinds = vec![Kind::Hub, Kind::Raw];
    if programs.peers.is_some() {
        kinds.push(Kind::BetterSse);
    }
    let plan = Plan::new(args.quick);
    let wants = |w: &str| args.only.iter().any(|o| o.eq_ignore_ascii_case(w));
    let total = [
        wants("A") as usize * kinds.len() * (plan.clock_ns.len() + 1),
        wants("B") as usize * kinds.len() * plan.notify.len(),
        wants("C") as usize * plan.publishers.len() * 2,
        wants("D") as usize,
        wants("E") as usize * kinds.len(),
        wants("F") as usize * SETUPS.len() * plan.instances.len(),
    ]
    .iter()
    .sum();
    let mut progress = Progress {
        start: Instant::now(),
        done: 0,
        total,
    };
    let mut report = Report::default();
    report.line(&format!(
        "Machine: {} cores, {}; open-file limit {fds}; load generator on the same machine; window {} s per run.",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory(),
        plan.window.as_secs()
    ));
    let mut problems = Vec::new();

    if wants("A") {
        report.section("A: clock fan-out (`/sse/time`)");
        let mut sweep = Vec::new();
        for &n in &plan.clock_ns {
            for &kind in &kinds {
                progress.step(&format!("A: {} × {n} subscribers, 100 ms", kind.name()));
                sweep.push(workloads::clock_fan_out(kind, &programs, n, 100, plan.window).await?);
            }
        }
        report.line("Every 100 ms:");
        report.fan_out(&sweep);
        let (n, interval) = plan.clock_fast;
        let mut fast = Vec::new();
        for &kind in &kinds {
            progress.step(&format!(
                "A: {} × {n} subscribers, {interval} ms",
                kind.name()
            ));
            fast.push(workloads::clock_fan_out(kind, &programs, n, interval, plan.window).await?);
        }
        report.line(&format!("Every {interval} ms:"));
        report.fan_out(&fast);
        // Clock ticks may be skipped under load (a late tick is not worth sending): only a
        // broken run falls far below the expected count.
        check(&mut problems, "A", sweep.iter().chain(&fast), 0.8);
        if !args.quick {
            std::fs::create_dir_all(&args.charts)?;
            report::chart(
                &args.charts.join("clock-p99.svg"),
                "A: p99 latency, clock every 100 ms",
                "p99 latency (ms)",
                &sweep,
                |r| r.p99_ms,
            )?;
            report::chart(
                &args.charts.join("clock-delivery.svg"),
                "A: events delivered, clock every 100 ms",
                "delivered (%)",
                &sweep,
                |r| r.delivery() * 100.0,
            )?;
            report::chart(
                &args.charts.join("clock-rss.svg"),
                "A: server memory per connection",
                "RSS per connection (KiB)",
                &sweep,
                |r| r.rss_per_connection() / 1024.0,
            )?;
        }
    }
    if wants("B") {
        report.section("B: notification fan-out, store on (`/events`)");
        let mut runs = Vec::new();
        for &(n, rate) in &plan.notify {
            for &kind in &kinds {
                progress.step(&format!(
                    "B: {} × {n} subscribers, {rate} publishes/s",
                    kind.name()
                ));
                runs.push(
                    workloads::notification_fan_out(kind, &programs, n, rate, plan.window).await?,
                );
            }
        }
        report.line("Latency is publish (request sent) → delivered to a subscriber.");
        report.fan_out(&runs);
        check(&mut problems, "B", &runs, 1.0);
    }
    if wants("C") {
        report.section("C: acknowledged publishes per second (each 201 on disk)");
        let target = Target::start(Kind::Hub, &programs, &[])?;
        let mut runs = Vec::new();
        for streams in [1, 100] {
            for &publishers in &plan.publishers {
                progress.step(&format!("C: {publishers} publishers, {streams} streams"));
                runs.push(
                    workloads::publish_throughput(&target, publishers, streams, plan.window / 2)
                        .await,
                );
            }
        }
        report.throughput(&runs);
        if runs.iter().any(|r| r.failed > 0 || r.acked == 0) {
            problems.push("C: publishes failed".to_owned());
        }
    }
    if wants("D") {
        report.section("D: replay storm");
        let (clients, behind) = plan.storm;
        progress.step(&format!(
            "D: {clients} clients reconnecting, {behind} behind"
        ));
        let storm = workloads::replay_storm(&programs, clients, behind).await?;
        report.storm(&storm);
        if storm.caught_up != clients as u64 {
            problems.push(format!("D: {} of {clients} caught up", storm.caught_up));
        }
    }
    if wants("E") {
        report.section("E: idle subscribers' memory");
        let mut runs = Vec::new();
        for &kind in &kinds {
            progress.step(&format!(
                "E: {} × {} idle subscribers",
                kind.name(),
                plan.idle
            ));
            runs.push(workloads::idle_memory(kind, &programs, plan.idle).await?);
        }
        report.idle(&runs);
        if runs.iter().any(|r| r.failed > 0) {
            problems.push("E: connections failed".to_owned());
        }
    }

    if wants("F") {
        report.section("F: notification fan-out across instances sharing Redis");
        // Durable as SQLite is (appendfsync always): every 201 is on disk.
        let redis = e2e::redis::RedisServer::start_durable()
            .context("workload F needs redis-server (scripts/setup.sh installs it)")?;
        report.line(
            "Latency is publish (request sent) → delivered; publishes go to each instance in \
             turn and subscribers are spread evenly, so most notifications cross instances.",
        );
        for &(n, rate) in &plan.instances {
            let mut runs = Vec::new();
            for setup in SETUPS {
                progress.step(&format!(
                    "F: {} × {n} subscribers, {rate} publishes/s",
                    setup.name()
                ));
                let run = workloads::fan_out_across_instances(
                    setup,
                    &programs,
                    &redis.url,
                    n,
                    rate,
                    plan.window,
                )
                .await?;
                runs.push((setup, run));
            }
            report.line(&format!("{rate} publishes/s:"));
            report.instances(&runs);
            check(&mut problems, "F", runs.iter().map(|(_, run)| run), 1.0);
        }
    }

    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, &report.markdown)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "bench: done in {:.0} s; figures in {}",
        progress.start.elapsed().as_secs_f64(),
        args.out.display()
    );
    if args.quick && !problems.is_empty() {
        bail!("the quick bench found problems: {}", problems.join("; "));
    }
    Ok(())
}

/// Notes runs whose connections failed or that delivered less than `min_delivery`.
fn check<'a>(
    problems: &mut Vec<String>,
    workload: &str,
    runs: impl IntoIterator<Item = &'a FanOut>,
    min_delivery: f64,
) {
    for run in runs {
        if run.failed > 0 || run.delivery() < min_delivery {
            problems.push(format!(
                "{workload}: {} × {}: {} failed, {:.1} % delivered",
                run.kind.name(),
                run.n,
                run.failed,
                run.delivery() * 100.0
            ));
        }
    }
}

/// The project's tools cache (as `scripts/env.sh` sets it).
fn tools_dir() -> PathBuf {
    std::env::var_os("HUB_TOOLS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/notify-hub"))
        })
        .unwrap_or_else(|| PathBuf::from(".cache/notify-hub"))
}

/// The machine's memory, from /proc/meminfo.
fn memory() -> String {
    let kib = target::proc_kib("/proc/meminfo", "MemTotal:");
    format!("{:.0} GiB", kib as f64 / 1048576.0)
}

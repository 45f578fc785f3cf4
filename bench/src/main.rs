//! The fan-out benchmark. `cargo run --release -p bench` runs every workload against our
//! server, the raw tokio baseline and better-sse, prints the figures as they come, and
//! writes them to `bench/results.md` with charts in `bench/charts/`. `--quick` runs a
//! seconds-long version (small N) that checks that every event arrived. `--soak MINUTES`
//! runs the soak instead (see `soak.rs`), into `bench/soak.md`.

mod load;
mod raw;
mod report;
mod soak;
mod target;
mod worker;
mod workloads;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use report::Report;
use target::{Kind, Programs, Target};
use workloads::{FanOut, Setup, Wire};

/// The fan-out benchmark (see BENCHMARKS.md).
#[derive(Parser)]
#[command(name = "bench")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// A seconds-long run with small N that fails unless every event arrived.
    #[arg(long)]
    quick: bool,
    /// Workloads to run, e.g. `A,C` (default: all of A B C D E F G H I J).
    #[arg(long, value_delimiter = ',', default_value = "A,B,C,D,E,F,G,H,I,J")]
    only: Vec<String>,
    /// Our server binary.
    #[arg(long, default_value = "target/release/server")]
    hub: PathBuf,
    /// Leave out better-sse (no Node or npm needed).
    #[arg(long)]
    no_peers: bool,
    /// Run the soak for this many minutes instead of the workloads (with `--quick`: its
    /// small version, which fails unless every notification arrived).
    #[arg(long, value_name = "MINUTES", value_parser = clap::value_parser!(u64).range(1..))]
    soak: Option<u64>,
    /// Where the Markdown results go [default: bench/results.md, bench/soak.md for the soak].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where the charts go (full runs only).
    #[arg(long, default_value = "bench/charts")]
    charts: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// The raw tokio baseline server (started by the bench itself).
    #[command(hide = true)]
    RawServer,
    /// One share of workload I's load generator (started by the bench itself).
    #[command(hide = true)]
    LoadWorker(worker::Share),
}

/// Workload H's wires, the reference (plain HTTP) first.
const WIRES: [Wire; 3] = [Wire::Http, Wire::Https1, Wire::H2];

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
    /// G: subscribers and publishes a second, on one stream and on ten.
    selections: (usize, u32),
    /// H: subscribers and publishes a second, over each wire.
    wires: (usize, u32),
    /// I: instances, subscribers on each, and the window.
    crowd: (usize, usize, Duration),
    /// I: with the clock on each connection (as asked), and without.
    crowd_clocks: Vec<bool>,
    /// J: users (a stream each, one subscriber each) and publishes a second.
    users: (usize, u32),
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
                selections: (50, 50),
                wires: (50, 50),
                crowd: (2, 100, Duration::from_secs(2)),
                crowd_clocks: vec![true],
                users: (200, 100),
            }
        } else {
            Self {
                window: Duration::from_secs(10),
                clock_ns: vec![1_000, 2_500, 5_000, 10_000],
                clock_fast: (1_000, 10),
                notify: vec![(1_000, 500), (10_000, 20)],
                publishers: vec![1, 8, 64],
                storm: (1_000, 1_000),
                idle: 19_000,
                instances: vec![(1_000, 50), (1_000, 500)],
                selections: (1_000, 100),
                wires: (1_000, 100),
                // 20,000 each would not fit under the open-file limit beside an
                // instance's listener, database and Redis connections.
                crowd: (6, 16_667, Duration::from_secs(30)),
                crowd_clocks: vec![true, false],
                users: (19_000, 1_000),
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
    match args.command {
        Some(Command::RawServer) => return runtime.block_on(raw::serve()),
        Some(Command::LoadWorker(share)) => return runtime.block_on(worker::run(share)),
        None => {}
    }
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut bench = Bench::new(&args)?;
    if let Some(minutes) = args.soak {
        return bench.soak(minutes, &args).await;
    }
    let wants = |w: &str| args.only.iter().any(|o| o.eq_ignore_ascii_case(w));
    bench.progress.total = [
        wants("A") as usize * bench.kinds.len() * (bench.plan.clock_ns.len() + 1),
        wants("B") as usize * bench.kinds.len() * bench.plan.notify.len(),
        wants("C") as usize * bench.plan.publishers.len() * 2,
        wants("D") as usize,
        wants("E") as usize * bench.kinds.len(),
        wants("F") as usize * SETUPS.len() * bench.plan.instances.len(),
        wants("G") as usize * 2,
        wants("H") as usize * WIRES.len(),
        wants("I") as usize * 2 * bench.plan.crowd_clocks.len(),
        wants("J") as usize * 2,
    ]
    .iter()
    .sum();
    if wants("A") {
        bench.clock_fan_out().await?;
    }
    if wants("B") {
        bench.notification_fan_out().await?;
    }
    if wants("C") {
        bench.publish_throughput().await?;
    }
    if wants("D") {
        bench.replay_storm().await?;
    }
    if wants("E") {
        bench.idle_memory().await?;
    }
    if wants("F") {
        bench.across_instances().await?;
    }
    if wants("G") {
        bench.several_streams().await?;
    }
    if wants("H") {
        bench.over_wires().await?;
    }
    if wants("I") {
        bench.crowd().await?;
    }
    if wants("J") {
        bench.per_user().await?;
    }

    bench.write(args.out.as_deref().unwrap_or(Path::new("bench/results.md")))?;
    if args.quick && !bench.problems.is_empty() {
        bail!(
            "the quick bench found problems: {}",
            bench.problems.join("; ")
        );
    }
    Ok(())
}

/// One run of the benchmark: what it runs against, its sizes, and what it has found.
struct Bench {
    programs: Programs,
    /// The servers compared: ours, the raw baseline, and better-sse when installed.
    kinds: Vec<Kind>,
    plan: Plan,
    quick: bool,
    charts: PathBuf,
    progress: Progress,
    report: Report,
    /// What fails a quick run.
    problems: Vec<String>,
}

impl Bench {
    /// Checks the server binary, installs the peers (full runs), and starts the report
    /// with the machine's figures.
    fn new(args: &Args) -> anyhow::Result<Self> {
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
        let mut report = Report::default();
        report.line(&format!(
            "Machine: {} cores, {}; open-file limit {fds}; load generator on the same machine; window {} s per run.",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory(),
            plan.window.as_secs()
        ));
        Ok(Self {
            programs,
            kinds,
            plan,
            quick: args.quick,
            charts: args.charts.clone(),
            progress: Progress {
                start: Instant::now(),
                done: 0,
                total: 0,
            },
            report,
            problems: Vec::new(),
        })
    }

    /// A: the clock's fan-out (`/sse/time`), every 100 ms over a sweep of N and at a fast interval, with charts on full runs.
    async fn clock_fan_out(&mut self) -> anyhow::Result<()> {
        self.report.section("A: clock fan-out (`/sse/time`)");
        let mut sweep = Vec::new();
        for &n in &self.plan.clock_ns {
            for &kind in &self.kinds {
                self.progress
                    .step(&format!("A: {} × {n} subscribers, 100 ms", kind.name()));
                sweep.push(
                    workloads::clock_fan_out(kind, &self.programs, n, 100, self.plan.window)
                        .await?,
                );
            }
        }
        self.report.line("Every 100 ms:");
        self.report.fan_out(&sweep);
        let (n, interval) = self.plan.clock_fast;
        let mut fast = Vec::new();
        for &kind in &self.kinds {
            self.progress.step(&format!(
                "A: {} × {n} subscribers, {interval} ms",
                kind.name()
            ));
            fast.push(
                workloads::clock_fan_out(kind, &self.programs, n, interval, self.plan.window)
                    .await?,
            );
        }
        self.report.line(&format!("Every {interval} ms:"));
        self.report.fan_out(&fast);
        // Clock ticks may be skipped under load (a late tick is not worth sending): only a
        // broken run falls far below the expected count.
        check(&mut self.problems, "A", sweep.iter().chain(&fast), 0.8);
        if !self.quick {
            std::fs::create_dir_all(&self.charts)?;
            report::chart(
                &self.charts.join("clock-p99.svg"),
                "A: p99 latency, clock every 100 ms",
                "p99 latency (ms)",
                &sweep,
                |r| r.p99_ms,
            )?;
            report::chart(
                &self.charts.join("clock-delivery.svg"),
                "A: events delivered, clock every 100 ms",
                "delivered (%)",
                &sweep,
                |r| r.delivery() * 100.0,
            )?;
            report::chart(
                &self.charts.join("clock-rss.svg"),
                "A: server memory per connection",
                "RSS per connection (KiB)",
                &sweep,
                |r| r.rss_per_connection() / 1024.0,
            )?;
        }
        Ok(())
    }

    /// I: a machine's worth of subscribers over several instances on one Redis, each
    /// with a load worker of its own, against the raw writer run the same way.
    async fn crowd(&mut self) -> anyhow::Result<()> {
        let (instances, per_instance, window) = self.plan.crowd;
        self.report.section(&format!(
            "I: {} subscribers over {instances} instances, one Redis",
            instances * per_instance
        ));
        let mut runs = Vec::new();
        for clock in self.plan.crowd_clocks.clone() {
            for kind in [Kind::Hub, Kind::Raw] {
                self.progress.step(&format!(
                    "I: {} × {instances} instances × {per_instance} subscribers{}",
                    kind.name(),
                    if clock { ", clock every second" } else { "" }
                ));
                let redis =
                    match kind {
                        Kind::Hub => Some(e2e::redis::RedisServer::start_durable().context(
                            "workload I needs redis-server (scripts/setup.sh installs it)",
                        )?),
                        _ => None,
                    };
                runs.push(
                    workloads::crowd(
                        kind,
                        &self.programs,
                        redis.as_ref(),
                        instances,
                        per_instance,
                        clock,
                        window,
                    )
                    .await?,
                );
            }
        }
        self.report.crowd(&runs);
        check(&mut self.problems, "I", runs.iter().map(|c| &c.run), 0.999);
        Ok(())
    }

    /// Writes the report to `out`.
    fn write(&self, out: &Path) -> anyhow::Result<()> {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, &self.report.markdown)
            .with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!(
            "bench: done in {:.0} s; figures in {}",
            self.progress.start.elapsed().as_secs_f64(),
            out.display()
        );
        Ok(())
    }

    /// The soak, with its chart on full runs; a quick one fails unless every notification
    /// arrived once, in order.
    async fn soak(&mut self, minutes: u64, args: &Args) -> anyhow::Result<()> {
        self.report.section("Soak: subscribers coming and going");
        let soak = soak::run(&self.programs, soak::Plan::new(minutes, self.quick)).await?;
        self.report.soak(&soak);
        if !self.quick {
            std::fs::create_dir_all(&self.charts)?;
            report::soak_chart(&self.charts.join("soak.svg"), &soak)?;
        }
        self.write(args.out.as_deref().unwrap_or(Path::new("bench/soak.md")))?;
        let (delivery, wrong) = soak.delivery();
        if self.quick && (delivery < 1.0 || wrong > 0) {
            bail!(
                "the quick soak lost or garbled notifications: {:.3} % delivered, {wrong} ids wrong",
                delivery * 100.0
            );
        }
        Ok(())
    }

    /// H: workload B over plain HTTP, HTTPS/1.1 and HTTP/2, ours only.
    async fn over_wires(&mut self) -> anyhow::Result<()> {
        self.report
            .section("H: HTTPS and HTTP/2 against plain HTTP (`/events`, ours)");
        let (n, rate) = self.plan.wires;
        let mut runs = Vec::new();
        for wire in WIRES {
            self.progress.step(&format!(
                "H: {} × {n} subscribers, {rate} publishes/s",
                wire.name()
            ));
            let (run, connect) =
                workloads::fan_out_over_wire(&self.programs, wire, n, rate, self.plan.window)
                    .await?;
            runs.push((wire, run, connect));
        }
        self.report.wires(&runs);
        let fan_outs: Vec<FanOut> = runs.iter().map(|(_, run, _)| run.clone()).collect();
        check(&mut self.problems, "H", &fan_outs, 1.0);
        Ok(())
    }

    /// B: notifications fanned out with the store on (`/events`).
    async fn notification_fan_out(&mut self) -> anyhow::Result<()> {
        self.report
            .section("B: notification fan-out, store on (`/events`)");
        let mut runs = Vec::new();
        for &(n, rate) in &self.plan.notify {
            for &kind in &self.kinds {
                self.progress.step(&format!(
                    "B: {} × {n} subscribers, {rate} publishes/s",
                    kind.name()
                ));
                runs.push(
                    workloads::notification_fan_out(
                        kind,
                        &self.programs,
                        n,
                        rate,
                        self.plan.window,
                    )
                    .await?,
                );
            }
        }
        self.report
            .line("Latency is publish (request sent) → delivered to a subscriber.");
        self.report.fan_out(&runs);
        check(&mut self.problems, "B", &runs, 1.0);
        Ok(())
    }

    /// C: acknowledged publishes per second, on one stream and on 100.
    async fn publish_throughput(&mut self) -> anyhow::Result<()> {
        self.report
            .section("C: acknowledged publishes per second (each 201 on disk)");
        let target = Target::start(Kind::Hub, &self.programs, &[])?;
        let mut runs = Vec::new();
        for streams in [1, 100] {
            for &publishers in &self.plan.publishers {
                self.progress
                    .step(&format!("C: {publishers} publishers, {streams} streams"));
                runs.push(
                    workloads::publish_throughput(
                        &target,
                        publishers,
                        streams,
                        self.plan.window / 2,
                    )
                    .await,
                );
            }
        }
        self.report.throughput(&runs);
        if runs.iter().any(|r| r.failed > 0 || r.acked == 0) {
            self.problems.push("C: publishes failed".to_owned());
        }
        Ok(())
    }

    /// D: a storm of clients reconnecting behind.
    async fn replay_storm(&mut self) -> anyhow::Result<()> {
        self.report.section("D: replay storm");
        let (clients, behind) = self.plan.storm;
        self.progress.step(&format!(
            "D: {clients} clients reconnecting, {behind} behind"
        ));
        let storm = workloads::replay_storm(&self.programs, clients, behind).await?;
        self.report.storm(&storm);
        if storm.caught_up != clients as u64 {
            self.problems
                .push(format!("D: {} of {clients} caught up", storm.caught_up));
        }
        Ok(())
    }

    /// J: a stream per user on one instance, against the raw writer's map from user to
    /// connections.
    async fn per_user(&mut self) -> anyhow::Result<()> {
        self.report.section("J: a stream per user");
        let (n, rate) = self.plan.users;
        self.report.line(&format!(
            "{n} users, each subscribed to `user.N` on its own connection; RSS per \
             connection measured before any publish; then {rate} publishes a second, each \
             to one user at random, for {} s.",
            self.plan.window.as_secs()
        ));
        let mut runs = Vec::new();
        for kind in [Kind::Hub, Kind::Raw] {
            self.progress
                .step(&format!("J: {} × {n} users, {rate}/s", kind.name()));
            runs.push(workloads::per_user(kind, &self.programs, n, rate, self.plan.window).await?);
        }
        self.report.fan_out(&runs);
        check(&mut self.problems, "J", &runs, 1.0);
        Ok(())
    }

    /// E: the memory of idle subscribers.
    async fn idle_memory(&mut self) -> anyhow::Result<()> {
        self.report.section("E: idle subscribers' memory");
        let mut runs = Vec::new();
        for &kind in &self.kinds {
            self.progress.step(&format!(
                "E: {} × {} idle subscribers",
                kind.name(),
                self.plan.idle
            ));
            runs.push(workloads::idle_memory(kind, &self.programs, self.plan.idle).await?);
        }
        self.report.idle(&runs);
        if runs.iter().any(|r| r.failed > 0) {
            self.problems.push("E: connections failed".to_owned());
        }
        Ok(())
    }

    /// F: notifications fanned out across instances sharing one Redis, against SQLite.
    async fn across_instances(&mut self) -> anyhow::Result<()> {
        self.report
            .section("F: notification fan-out across instances sharing Redis");
        // Durable as SQLite is (appendfsync always): every 201 is on disk.
        let redis = e2e::redis::RedisServer::start_durable()
            .context("workload F needs redis-server (scripts/setup.sh installs it)")?;
        self.report.line(
            "Latency is publish (request sent) → delivered; publishes go to each instance in \
             turn and subscribers are spread evenly, so most notifications cross instances.",
        );
        for &(n, rate) in &self.plan.instances {
            let mut runs = Vec::new();
            for setup in SETUPS {
                self.progress.step(&format!(
                    "F: {} × {n} subscribers, {rate} publishes/s",
                    setup.name()
                ));
                let run = workloads::fan_out_across_instances(
                    setup,
                    &self.programs,
                    &redis.url,
                    n,
                    rate,
                    self.plan.window,
                )
                .await?;
                runs.push((setup, run));
            }
            self.report.line(&format!("{rate} publishes/s:"));
            self.report.instances(&runs);
            check(
                &mut self.problems,
                "F",
                runs.iter().map(|(_, run)| run),
                1.0,
            );
        }
        Ok(())
    }

    /// G: the cost of following several streams on one connection: each subscriber on ten
    /// streams (nine named, one through a pattern) against each on one, at the same rate
    /// of publishes (each of which every subscriber gets either way).
    async fn several_streams(&mut self) -> anyhow::Result<()> {
        self.report
            .section("G: several streams on one connection (`/events?stream=…&stream=g.p*`)");
        let (n, rate) = self.plan.selections;
        let mut runs = Vec::new();
        for (label, selection) in [
            ("1 stream", workloads::Selection::one()),
            (
                "10 streams (9 named, 1 by pattern)",
                workloads::Selection::ten(),
            ),
        ] {
            self.progress.step(&format!(
                "G: {n} subscribers of {label}, {rate} publishes/s"
            ));
            let run = workloads::fan_out_over(
                Kind::Hub,
                &self.programs,
                n,
                rate,
                self.plan.window,
                &selection,
            )
            .await?;
            runs.push((label, run));
        }
        self.report.line(&format!(
            "{rate} publishes/s spread over the streams followed; latency is publish → delivered."
        ));
        self.report.selections(&runs);
        check(
            &mut self.problems,
            "G",
            runs.iter().map(|(_, run)| run),
            1.0,
        );
        Ok(())
    }
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

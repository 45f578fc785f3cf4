//! Figures as text (printed as they come, and collected into a Markdown results file) and
//! as charts (SVG, drawn with plotters).

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::soak::Soak;
use crate::target::Kind;
use crate::workloads::{Crowd, FanOut, Setup, Storm, Throughput, Wire};

/// The Markdown results of a run, built up as figures come in.
#[derive(Default)]
pub struct Report {
    pub markdown: String,
}

impl Report {
    /// A section heading, printed and recorded.
    pub fn section(&mut self, title: &str) {
        println!("\n## {title}");
        let _ = write!(self.markdown, "\n### {title}\n\n");
    }

    /// A table of fan-out runs, each against the first run of `baseline` with the same n.
    pub fn fan_out(&mut self, runs: &[FanOut]) {
        let header = "| server | N | connected / failed | events/s | delivered | × raw events/s | p50 ms | p99 ms | max ms | × raw p99 | RSS per conn | server CPU s |";
        let mut table = format!("{header}\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for run in runs {
            let raw = runs.iter().find(|r| r.kind == Kind::Raw && r.n == run.n);
            let ratio = |ours: f64, theirs: Option<f64>| match theirs {
                Some(t) if t > 0.0 => format!("{:.3}", ours / t),
                _ => "–".into(),
            };
            let _ = writeln!(
                table,
                "| {} | {} | {} / {} | {:.0} | {:.2} % | {} | {:.1} | {:.1} | {:.1} | {} | {} | {:.2} |",
                run.kind.name(),
                run.n,
                run.connected,
                run.failed,
                run.events_per_s(),
                run.delivery() * 100.0,
                ratio(run.events_per_s(), raw.map(FanOut::events_per_s)),
                run.p50_ms,
                run.p99_ms,
                run.max_ms,
                ratio(run.p99_ms, raw.map(|r| r.p99_ms)),
                kib(run.rss_per_connection()),
                run.cpu_s,
            );
        }
        println!("{table}");
        self.markdown.push_str(&table);
    }

    /// A table of workload G's runs: the same fan-out with each subscriber on one stream and
    /// on several, with latency and CPU per delivered notification as ratios of the first.
    pub fn selections(&mut self, runs: &[(&str, FanOut)]) {
        let mut table = "| each subscriber follows | N | connected / failed | events/s | delivered | p50 ms | p99 ms | × one stream p99 | server CPU s | CPU µs per delivery | × one stream |\n|---|---|---|---|---|---|---|---|---|---|---|\n".to_owned();
        let per_delivery = |run: &FanOut| run.cpu_s * 1e6 / run.events.max(1) as f64;
        let reference = runs.first().map(|(_, run)| (run.p99_ms, per_delivery(run)));
        let ratio = |ours: f64, theirs: f64| {
            if theirs > 0.0 {
                format!("{:.2}", ours / theirs)
            } else {
                "–".into()
            }
        };
        for (label, run) in runs {
            let (p99, cpu) = reference.unwrap_or_default();
            let _ = writeln!(
                table,
                "| {label} | {} | {} / {} | {:.0} | {:.2} % | {:.1} | {:.1} | {} | {:.2} | {:.2} | {} |",
                run.n,
                run.connected,
                run.failed,
                run.events_per_s(),
                run.delivery() * 100.0,
                run.p50_ms,
                run.p99_ms,
                ratio(run.p99_ms, p99),
                run.cpu_s,
                per_delivery(run),
                ratio(per_delivery(run), cpu),
            );
        }
        println!("{table}");
        self.markdown.push_str(&table);
    }

    /// A table of workload F's runs: the same fan-out on each setup, with latency as a
    /// ratio of the first (one instance on SQLite).
    pub fn instances(&mut self, runs: &[(Setup, FanOut)]) {
        let mut table = "| setup | N | connected / failed | delivered | p50 ms | p99 ms | max ms | × SQLite p99 | RSS per conn | servers' CPU s |\n|---|---|---|---|---|---|---|---|---|---|\n".to_owned();
        let reference = runs.first().map(|(_, run)| run.p99_ms);
        for (setup, run) in runs {
            let ratio = match reference {
                Some(r) if r > 0.0 => format!("{:.2}", run.p99_ms / r),
                _ => "–".into(),
            };
            let _ = writeln!(
                table,
                "| {} | {} | {} / {} | {:.2} % | {:.1} | {:.1} | {:.1} | {ratio} | {} | {:.2} |",
                setup.name(),
                run.n,
                run.connected,
                run.failed,
                run.delivery() * 100.0,
                run.p50_ms,
                run.p99_ms,
                run.max_ms,
                kib(run.rss_per_connection()),
                run.cpu_s,
            );
        }
        println!("{table}");
        self.markdown.push_str(&table);
    }

    /// A table of publish-throughput runs, with `before` (an earlier build's figures, if
    /// given) beside them.
    pub fn throughput(&mut self, runs: &[Throughput]) {
        let mut table =
            "| publishers | streams | acknowledged/s | failed |\n|---|---|---|---|\n".to_owned();
        for run in runs {
            let _ = writeln!(
                table,
                "| {} | {} | {:.0} | {} |",
                run.publishers,
                run.streams,
                run.per_s(),
                run.failed
            );
        }
        println!("{table}");
        self.markdown.push_str(&table);
    }

    /// D's figures.
    pub fn storm(&mut self, storm: &Storm) {
        let table = format!(
            "| clients × behind | caught up / failed | seconds until all caught up | /healthz p50 ms | p99 ms | max ms |\n\
             |---|---|---|---|---|---|\n| {} × {} | {} / {} | {:.2} | {:.1} | {:.1} | {:.1} |\n",
            storm.clients,
            storm.behind,
            storm.caught_up,
            storm.failed,
            storm.seconds,
            storm.healthz_p50_ms,
            storm.healthz_p99_ms,
            storm.healthz_max_ms
        );
        println!("{table}");
        self.markdown.push_str(&table);
    }

    /// E's figures.
    pub fn idle(&mut self, runs: &[FanOut]) {
        let mut table = "| server | idle subscribers | RSS before | RSS after | per subscriber |\n|---|---|---|---|---|\n".to_owned();
        for run in runs {
            let _ = writeln!(
                table,
                "| {} | {} | {:.1} MiB | {:.1} MiB | {} |",
                run.kind.name(),
                run.connected,
                run.rss_before as f64 / 1048576.0,
                run.rss_after as f64 / 1048576.0,
                kib(run.rss_per_connection())
            );
        }
        println!("{table}");
        self.markdown.push_str(&table);
    }

    /// Workload H: each wire against plain HTTP (the first run), in one run.
    pub fn wires(&mut self, runs: &[(Wire, FanOut, std::time::Duration)]) {
        let mut table = "| wire | N | connected / failed | connect all | delivered | p50 ms | p99 ms | × plain p99 | RSS per subscriber | × plain | server CPU s |\n|---|---|---|---|---|---|---|---|---|---|---|\n".to_owned();
        let plain = runs.first().map(|(_, run, _)| run.clone());
        for (wire, run, connect) in runs {
            let ratio = |ours: f64, theirs: f64| {
                if theirs > 0.0 {
                    format!("{:.2}", ours / theirs)
                } else {
                    "–".into()
                }
            };
            let (plain_p99, plain_rss) = plain
                .as_ref()
                .map_or((0.0, 0.0), |p| (p.p99_ms, p.rss_per_connection()));
            let _ = writeln!(
                table,
                "| {} | {} | {} / {} | {:.2} s | {:.2} % | {:.1} | {:.1} | {} | {} | {} | {:.2} |",
                wire.name(),
                run.n,
                run.connected,
                run.failed,
                connect.as_secs_f64(),
                run.delivery() * 100.0,
                run.p50_ms,
                run.p99_ms,
                ratio(run.p99_ms, plain_p99),
                kib(run.rss_per_connection()),
                ratio(run.rss_per_connection(), plain_rss),
                run.cpu_s,
            );
        }
        println!("{table}");
        self.markdown.push_str(&table);
    }

    /// Workload I: each server's run against the raw writer's, then every process's
    /// memory and CPU.
    pub fn crowd(&mut self, runs: &[Crowd]) {
        let mut table = "| server | each follows | instances × subscribers | connected / failed | connect all | notifications delivered | clock ticks missed | p50 ms | p99 ms | max ms | × raw p99 | server RSS per subscriber | servers' CPU s | CPU µs per delivery | × raw |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n".to_owned();
        let per_delivery = |c: &Crowd| c.run.cpu_s * 1e6 / (c.run.events + c.ticks).max(1) as f64;
        let raw = |clock| {
            runs.iter()
                .find(|c| c.run.kind == Kind::Raw && c.clock == clock)
        };
        let ratio = |ours: f64, theirs: Option<f64>| match theirs {
            Some(t) if t > 0.0 => format!("{:.2}", ours / t),
            _ => "–".into(),
        };
        for c in runs {
            let run = &c.run;
            let _ = writeln!(
                table,
                "| {} | {} | {} × {} | {} / {} | {:.1} s | {:.3} % | {} of {} | {:.1} | {:.1} | {:.1} | {} | {} | {:.1} | {:.2} | {} |",
                run.kind.name(),
                c.follows(),
                c.instances,
                run.n / c.instances.max(1),
                run.connected,
                run.failed,
                c.connect.as_secs_f64(),
                run.delivery() * 100.0,
                c.ticks_missed,
                c.ticks + c.ticks_missed,
                run.p50_ms,
                run.p99_ms,
                run.max_ms,
                ratio(run.p99_ms, raw(c.clock).map(|r| r.run.p99_ms)),
                kib(run.rss_per_connection()),
                run.cpu_s,
                per_delivery(c),
                ratio(per_delivery(c), raw(c.clock).map(per_delivery)),
            );
        }
        table.push_str(
            "\n| server | each follows | process | RSS at the end | CPU s in the window |\n|---|---|---|---|---|\n",
        );
        for c in runs {
            for (name, rss, cpu) in &c.processes {
                let _ = writeln!(
                    table,
                    "| {} | {} | {name} | {:.1} MiB | {cpu:.1} |",
                    c.run.kind.name(),
                    c.follows(),
                    *rss as f64 / 1048576.0
                );
            }
        }
        println!("{table}");
        self.markdown.push_str(&table);
    }

    /// The soak's samples, and what they come to after warm-up.
    pub fn soak(&mut self, soak: &Soak) {
        let plan = &soak.plan;
        self.line(&format!(
            "{} min; {} subscribers over {} streams, {:.0} arriving and as many leaving a \
             second (one in ten resuming {} entries back); {} publishes a second. {} stays \
             checked, {} notifications published.",
            plan.minutes,
            plan.population,
            crate::soak::STREAMS,
            plan.population as f64 / plan.lifetime.as_secs_f64(),
            crate::soak::RESUME_BACK,
            plan.publishes_per_s,
            soak.sessions,
            soak.published
        ));
        let mut table = "| at | RSS | open fds | tasks | connected | p99 ms | stays checked | delivered | wrong |\n|---|---|---|---|---|---|---|---|---|\n".to_owned();
        for sample in &soak.samples {
            let _ = writeln!(table, "{}", sample.row());
        }
        println!("{table}");
        self.markdown.push_str(&table);
        let (delivery, wrong) = soak.delivery();
        self.line(&format!(
            "After warm-up ({} samples): RSS spread {:.1} %, open fds spread {:.1} %, tasks \
             spread {:.1} % (max − min over min); delivery {:.3} %, {wrong} ids wrong.",
            plan.warm_up,
            soak.spread(|s| s.rss as f64) * 100.0,
            soak.spread(|s| s.fds as f64) * 100.0,
            soak.spread(|s| s.tasks) * 100.0,
            delivery * 100.0
        ));
    }

    /// A free line of text.
    pub fn line(&mut self, text: &str) {
        println!("{text}");
        let _ = writeln!(self.markdown, "{text}\n");
    }
}

fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

/// Draws `value` of each server's runs against N, one line per server, into `path` (SVG).
pub fn chart(
    path: &Path,
    title: &str,
    y_label: &str,
    runs: &[FanOut],
    value: impl Fn(&FanOut) -> f64,
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_n = runs.iter().map(|r| r.n).max().unwrap_or(1) as f64;
    let max_y = runs.iter().map(&value).fold(0.0, f64::max).max(1e-9) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_n * 1.05, 0.0..max_y)?;
    chart
        .configure_mesh()
        .x_desc("subscribers (N)")
        .y_desc(y_label)
        .draw()?;
    for (kind, color) in [
        (Kind::Hub, BLUE),
        (Kind::Raw, BLACK),
        (Kind::BetterSse, RED),
    ] {
        let points: Vec<(f64, f64)> = runs
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| (r.n as f64, value(r)))
            .collect();
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(kind.name())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The soak's RSS, open fds and tasks over time, each as a percentage of its first value
/// after warm-up, into `path` (SVG): a leak is a line that climbs.
pub fn soak_chart(path: &Path, soak: &Soak) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let settled = soak.settled();
    let Some(first) = settled.first() else {
        return Ok(());
    };
    let minutes = |s: &crate::soak::Sample| s.at.as_secs_f64() / 60.0;
    let end = soak.samples.last().map_or(1.0, minutes);
    type Value = fn(&crate::soak::Sample) -> f64;
    let series: [(&str, Value, RGBColor); 3] = [
        ("RSS", |s| s.rss as f64, BLUE),
        ("open fds", |s| s.fds as f64, BLACK),
        ("tasks", |s| s.tasks, RED),
    ];
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Soak: RSS, open fds and tasks against the first sample after warm-up",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end * 1.02, 80.0..120.0)?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc("% of the first settled sample")
        .draw()?;
    for (name, value, color) in series {
        let base = value(first).max(1e-9);
        let points: Vec<(f64, f64)> = soak
            .samples
            .iter()
            .map(|s| (minutes(s), (value(s) / base * 100.0).clamp(80.0, 120.0)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

//! The command line: `serve` (the default), and later `publish` and `listen`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::Config;

/// notify-hub: real-time notifications over Server-Sent Events.
#[derive(Parser, Debug)]
#[command(
    name = "server",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the web app, the SSE streams and the API (the default).
    Serve(ServeArgs),
}

/// Flags of `serve`.
#[derive(Args, Debug)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Folder with the built web app (`trunk build --release` writes `dist/`).
    #[arg(long, env = "ASSETS", default_value = "dist")]
    assets: PathBuf,
    /// Seconds between SSE keep-alive comments.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    keep_alive_secs: u64,
    /// Reconnection delay suggested to browsers, in milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    retry_ms: u64,
    /// Seconds open streams get to close after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=600))]
    shutdown_grace_secs: u64,
}

impl ServeArgs {
    fn into_config(self) -> Config {
        Config {
            addr: self.addr,
            assets: self.assets,
            keep_alive: Duration::from_secs(self.keep_alive_secs),
            retry: Duration::from_millis(self.retry_ms),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
        }
    }
}

impl Cli {
    /// Runs the chosen command; failures print one line naming the problem.
    pub async fn run(self) -> ExitCode {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_env_filter(
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
            )
            .init();
        let result = match self.command {
            Some(Command::Serve(args)) => crate::serve::run(args.into_config()).await,
            None => crate::serve::run(self.serve.into_config()).await,
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        }
    }
}

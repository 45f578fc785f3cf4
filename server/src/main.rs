//! The `server` binary: a thin shell over the library's command line.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    server::cli::Cli::parse().run().await
}

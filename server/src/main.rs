//! The `server` binary: a thin shell over the library's command line.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    server::cli::Cli::parse_args().run().await
}

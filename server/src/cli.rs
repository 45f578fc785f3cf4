//! The command line: `serve` (the default), `publish` and `listen`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use axum::http::HeaderValue;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use common::{Level, NewNotification, DEFAULT_STREAM};

use crate::auth;
use crate::config::{
    cors_origin, count_unless_zero, defaults, retention, seconds_unless_zero, Config, MIB,
};
use crate::hub_client::{self, Format};
use crate::limits::MaxOpenConnections;
use crate::tls::TlsFiles;

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
    /// The secrets given as flags, to be warned about (see [`Cli::parse_args`]).
    #[arg(skip)]
    secret_flags: Vec<&'static Secret>,
}

/// A setting that holds a secret, and the variable that keeps it out of `ps`.
#[derive(Debug)]
struct Secret {
    /// The argument's id (its field's name).
    id: &'static str,
    flag: &'static str,
    env: &'static str,
}

/// Every secret setting of every command.
const SECRETS: [Secret; 4] = [
    Secret {
        id: "jwt_secret",
        flag: "--jwt-secret",
        env: "NOTIFY_HUB_JWT_SECRET",
    },
    Secret {
        id: "metrics_token",
        flag: "--metrics-token",
        env: "NOTIFY_HUB_METRICS_TOKEN",
    },
    Secret {
        id: "token",
        flag: "--token",
        env: "NOTIFY_HUB_TOKEN",
    },
    Secret {
        id: "redis",
        flag: "--redis",
        env: "NOTIFY_HUB_REDIS",
    },
];

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the web app, the SSE streams and the API (the default).
    Serve(Box<ServeArgs>),
    /// Publish one notification to a running server.
    Publish(PublishArgs),
    /// Print the notifications of a stream as they arrive, resuming after disconnects.
    Listen(ListenArgs),
    /// Mint a token (JWT, HS256) with the server's secret, for operators and scripts.
    Token(TokenArgs),
}

/// The server a client command talks to, and the token it shows.
#[derive(Args, Debug)]
struct ServerUrl {
    /// Base URL of the server.
    #[arg(long, env = "NOTIFY_HUB_URL", default_value_t = format!("http://{}", defaults::ADDR))]
    url: String,
    /// Token (JWT) sent as Authorization: Bearer, when the server checks tokens.
    #[arg(long, env = "NOTIFY_HUB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM certificates to trust for an https:// URL besides the system's (a private CA,
    /// a self-signed certificate).
    #[arg(long, env = "NOTIFY_HUB_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
}

impl ServerUrl {
    fn remote(&self) -> anyhow::Result<hub_client::Remote> {
        hub_client::Remote::new(&self.url, self.token.as_deref(), self.ca.as_deref())
    }
}

/// Whether the Redis URL given as `id` carries a password (`redis://:secret@host`).
fn redis_url_has_password(matches: &ArgMatches, id: &str) -> bool {
    matches
        .get_one::<String>(id)
        .and_then(|url| url::Url::parse(url).ok())
        .is_some_and(|url| url.password().is_some())
}

/// Flags of `token`.
#[derive(Args, Debug)]
struct TokenArgs {
    /// The server's HS256 secret.
    #[arg(long, env = "NOTIFY_HUB_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Who the token is for (the `sub` claim).
    #[arg(long)]
    sub: Option<String>,
    /// Stream pattern it may publish to (repeat for several): a name, or a prefix ending in *.
    #[arg(long, value_parser = auth::check_pattern)]
    publish: Vec<String>,
    /// Private-stream pattern it may read (repeat for several).
    #[arg(long, value_parser = auth::check_pattern)]
    subscribe: Vec<String>,
    /// How long it is valid: 90s, 30m, 1h, 7d, 1h 30m.
    #[arg(long, default_value = "1h", value_parser = ttl)]
    ttl: Duration,
    /// The audience it is for (the `aud` claim), as the server's --jwt-audience names it.
    #[arg(long)]
    aud: Option<String>,
}

/// A duration such as `90s`, `30m`, `1h` or `7d` (humantime's syntax).
fn ttl(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|err| format!("`{text}` is not a duration like 90s, 30m, 1h or 7d: {err}"))
}

/// Flags of `publish`.
#[derive(Args, Debug)]
struct PublishArgs {
    #[command(flatten)]
    server: ServerUrl,
    /// Stream to publish to.
    #[arg(long, default_value = DEFAULT_STREAM, value_parser = stream_name)]
    stream: String,
    /// One-line title (at most 200 characters).
    #[arg(long)]
    title: String,
    /// Body text (at most 4,000 characters).
    #[arg(long)]
    body: Option<String>,
    /// info, success, warning or error.
    #[arg(long)]
    level: Option<Level>,
}

/// Flags of `listen`.
#[derive(Args, Debug)]
struct ListenArgs {
    #[command(flatten)]
    server: ServerUrl,
    /// A stream to listen to, or a pattern (`alerts.*`); repeat it for several, on one
    /// connection.
    #[arg(long = "stream", default_value = DEFAULT_STREAM, value_parser = auth::check_pattern)]
    streams: Vec<String>,
    /// Start after this event id (replays what came after it).
    #[arg(long)]
    last_event_id: Option<String>,
    /// Exit after printing this many notifications.
    #[arg(long)]
    count: Option<u64>,
    /// Print each notification as its JSON.
    #[arg(long)]
    json: bool,
}

/// Checks a `--stream` value with the shared rule.
fn stream_name(name: &str) -> Result<String, String> {
    common::validate::stream_name(name)
        .map(str::to_owned)
        .map_err(|invalid| invalid.0)
}

async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let new = NewNotification {
        stream: Some(args.stream),
        title: args.title,
        body: args.body,
        level: args.level,
    };
    let stored = hub_client::publish(&args.server.remote()?, &new).await?;
    println!("{}", serde_json::to_string(&stored)?);
    Ok(())
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.publish.is_empty() || !args.subscribe.is_empty(),
        "a token needs at least one --publish or --subscribe pattern"
    );
    let claims = auth::Claims {
        exp: auth::expiry_in(args.ttl),
        sub: args.sub,
        publish: args.publish,
        subscribe: args.subscribe,
        aud: args.aud.map(auth::Audience::One),
        ..auth::Claims::default()
    };
    println!("{}", auth::Auth::mint(&args.jwt_secret, &claims)?);
    Ok(())
}

async fn listen(args: ListenArgs) -> anyhow::Result<()> {
    let format = if args.json {
        Format::Json
    } else {
        Format::Text
    };
    hub_client::listen(
        &args.server.remote()?,
        &args.streams,
        args.last_event_id,
        args.count,
        format,
        &mut std::io::stdout(),
    )
    .await
}

/// Flags of `serve`.
#[derive(Args, Debug)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ADDR", default_value = defaults::ADDR)]
    addr: SocketAddr,
    /// Folder with the built web app (`trunk build --release` writes `dist/`).
    #[arg(long, env = "ASSETS", default_value = defaults::ASSETS)]
    assets: PathBuf,
    /// Seconds between SSE keep-alive comments.
    #[arg(long, default_value_t = defaults::KEEP_ALIVE_SECS, value_parser = clap::value_parser!(u64).range(1..=3600))]
    keep_alive_secs: u64,
    /// Reconnection delay suggested to browsers, in milliseconds.
    #[arg(long, default_value_t = defaults::RETRY_MS, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    retry_ms: u64,
    /// Seconds open streams get to close after SIGINT/SIGTERM.
    #[arg(long, default_value_t = defaults::SHUTDOWN_GRACE_SECS, value_parser = clap::value_parser!(u64).range(0..=600))]
    shutdown_grace_secs: u64,
    /// SQLite database file, created on first run (not used with --redis).
    #[arg(long, env = "NOTIFY_HUB_DB", default_value = defaults::DB)]
    db: PathBuf,
    /// Keep notifications in Redis Streams (redis://host:port/db) instead of SQLite, so that
    /// several instances share streams, replay and live delivery.
    #[arg(long, env = "NOTIFY_HUB_REDIS", hide_env_values = true)]
    redis: Option<String>,
    /// What this hub's Redis keys start with: hubs with different prefixes can share one
    /// Redis without seeing each other's streams.
    #[arg(long, env = "NOTIFY_HUB_REDIS_PREFIX", default_value = defaults::REDIS_PREFIX)]
    redis_prefix: String,
    /// Notifications kept per stream (0: no limit).
    #[arg(long, default_value_t = defaults::RETAIN_COUNT)]
    retain_count: u64,
    /// Hours notifications are kept (0: no limit).
    #[arg(long, default_value_t = defaults::RETAIN_HOURS)]
    retain_hours: u64,
    /// Seconds between `heartbeat` events on notification streams.
    #[arg(long, default_value_t = defaults::HEARTBEAT_SECS, value_parser = clap::value_parser!(u64).range(1..=3600))]
    heartbeat_secs: u64,
    /// Close notification streams after this many seconds; clients resume where they were
    /// (0: never). Spreads long-lived connections over instances.
    #[arg(long, default_value_t = defaults::MAX_STREAM_SECS)]
    max_stream_secs: u64,
    /// Live notifications a subscriber may fall behind before it catches up from the store.
    #[arg(long, default_value_t = defaults::SUBSCRIBER_BUFFER, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    subscriber_buffer: u64,
    /// Origin allowed to use the API from a browser (repeat for several; default: any).
    #[arg(long = "cors-origin", value_parser = cors_origin)]
    cors_origins: Vec<HeaderValue>,
    /// Publish the seed's counter to the stream `counter` ten times a second (the last 600
    /// are kept).
    #[arg(long)]
    demo: bool,
    /// Seconds a client may take to send its request headers, and may stay idle between
    /// requests on a kept-alive connection; slower connections are closed (slowloris).
    #[arg(long, default_value_t = defaults::HEADER_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_timeout_secs: u64,
    /// Seconds a request may take until its response starts (its body read included);
    /// then `408`. Streams, once started, are not cut.
    #[arg(long, default_value_t = defaults::REQUEST_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=3600))]
    request_timeout_secs: u64,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1 on the same port) with this PEM certificate chain
    /// (certbot's fullchain.pem); read again when it changes.
    #[arg(
        long,
        env = "NOTIFY_HUB_TLS_CERT",
        requires = "tls_key",
        value_name = "FILE"
    )]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (certbot's privkey.pem).
    #[arg(
        long,
        env = "NOTIFY_HUB_TLS_KEY",
        requires = "tls_cert",
        value_name = "FILE"
    )]
    tls_key: Option<PathBuf>,
    /// Seconds a connection's writes may make no progress (a client gone, a half-open link,
    /// a reader that stopped) before it is closed and its streams freed.
    #[arg(long, default_value_t = defaults::SEND_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=3600))]
    send_timeout_secs: u64,
    /// Most SSE streams open at once (0: no limit); more are refused with 503 and
    /// Retry-After.
    #[arg(long, default_value_t = defaults::MAX_CONNECTIONS)]
    max_connections: u64,
    /// Most SSE streams open at once from one client IP (0: no limit); more get 429.
    #[arg(long, default_value_t = defaults::MAX_CONNECTIONS_PER_IP)]
    max_connections_per_ip: u64,
    /// Most connections of any kind open at once (streams, API calls, idle ones, ones that
    /// have sent nothing yet); more are closed as they are accepted (0: no cap) [default:
    /// the open-file limit, raised to its maximum, less a fiftieth (at least 64) for the
    /// store and Redis].
    #[arg(long, value_name = "N")]
    max_open_connections: Option<u64>,
    /// Take the client IP from X-Forwarded-For (last address): only behind a reverse proxy
    /// that sets it, or clients could pick their own.
    #[arg(long)]
    trust_proxy: bool,
    /// Publishes per second allowed per client (0: no limit); more get 429 and Retry-After.
    #[arg(long, default_value_t = defaults::PUBLISH_RATE)]
    publish_rate: u32,
    /// Publishes a client may make at once before the rate applies.
    #[arg(long, default_value_t = defaults::PUBLISH_BURST, value_parser = clap::value_parser!(u32).range(1..))]
    publish_burst: u32,
    /// HS256 secret that publish and subscribe tokens (JWT) are checked with; without it
    /// (or --jwt-public-key) everything is open.
    #[arg(long, env = "NOTIFY_HUB_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// PEM public key (RSA for RS256, EC P-256 for ES256) tokens are checked with.
    #[arg(long)]
    jwt_public_key: Option<PathBuf>,
    /// The audience tokens must name in their `aud` claim (without it, `aud` is not
    /// checked).
    #[arg(long, env = "NOTIFY_HUB_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// Streams that need a token with a matching `subscribe` claim to be read (repeat for
    /// several): a name, or a prefix ending in * (alerts.*).
    #[arg(long = "private-stream", value_parser = auth::check_pattern)]
    private_streams: Vec<String>,
    /// Require this token (`Authorization: Bearer`) to read /metrics.
    #[arg(long, env = "NOTIFY_HUB_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Largest size of the database file in MiB (0: no limit). When it is full, publishes
    /// get 503 until retention frees space; nothing stored is touched.
    #[arg(long, default_value_t = defaults::MAX_DB_MB)]
    max_db_mb: u64,
}

impl ServeArgs {
    fn into_config(self) -> Config {
        Config {
            addr: self.addr,
            assets: self.assets,
            keep_alive: Duration::from_secs(self.keep_alive_secs),
            retry: Duration::from_millis(self.retry_ms),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            db: self.db,
            redis: self.redis,
            redis_prefix: self.redis_prefix,
            retention: retention(self.retain_count, self.retain_hours),
            heartbeat: Duration::from_secs(self.heartbeat_secs),
            max_stream_age: seconds_unless_zero(self.max_stream_secs),
            subscriber_buffer: self.subscriber_buffer as usize,
            cors_origins: self.cors_origins,
            demo: self.demo,
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            send_timeout: Duration::from_secs(self.send_timeout_secs),
            tls: self
                .tls_cert
                .zip(self.tls_key)
                .map(|(cert, key)| TlsFiles { cert, key }),
            max_connections: count_unless_zero(self.max_connections),
            max_connections_per_ip: count_unless_zero(self.max_connections_per_ip),
            max_open_connections: MaxOpenConnections::from_flag(self.max_open_connections),
            trust_proxy: self.trust_proxy,
            publish_rate: NonZeroU32::new(self.publish_rate),
            publish_burst: NonZeroU32::new(self.publish_burst).unwrap_or(NonZeroU32::MIN),
            metrics_token: self.metrics_token,
            jwt_secret: self.jwt_secret,
            jwt_public_key: self.jwt_public_key,
            jwt_audience: self.jwt_audience,
            private_streams: self.private_streams,
            max_db_bytes: count_unless_zero(self.max_db_mb).map(|mb| mb as u64 * MIB),
            ..Config::default()
        }
    }
}

impl Cli {
    /// The command line of this process, parsed (exiting with clap's message on an error),
    /// with the secrets given as flags noted: a flag's value is visible to every user of
    /// the machine (`ps`, `/proc/PID/cmdline`), an environment variable's is not.
    pub fn parse_args() -> Self {
        let matches = Self::command().get_matches();
        let mut cli = Self::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
        let mut level = Some(&matches);
        while let Some(matches) = level {
            let given: Vec<&str> = matches.ids().map(|id| id.as_str()).collect();
            cli.secret_flags.extend(SECRETS.iter().filter(|secret| {
                given.contains(&secret.id)
                    && matches.value_source(secret.id) == Some(ValueSource::CommandLine)
                    && (secret.id != "redis" || redis_url_has_password(matches, secret.id))
            }));
            level = matches.subcommand().map(|(_, matches)| matches);
        }
        cli
    }

    /// Runs the chosen command; failures print one line naming the problem.
    pub async fn run(self) -> ExitCode {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_env_filter(
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
            )
            .init();
        for secret in &self.secret_flags {
            tracing::warn!(
                "{} was given on the command line, where every user of this machine can read \
                 it (ps, /proc): set {} instead",
                secret.flag,
                secret.env
            );
        }
        let result = match self.command {
            Some(Command::Serve(args)) => crate::serve::run(args.into_config()).await,
            None => crate::serve::run(self.serve.into_config()).await,
            Some(Command::Publish(args)) => publish(args).await,
            Some(Command::Listen(args)) => listen(args).await,
            Some(Command::Token(args)) => token(args),
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

//! A native client of a running hub, behind the `publish` and `listen` commands (like the
//! seed's Go client). SSE is parsed with `eventsource-stream`; reconnects wait as every
//! client of the hub does ([`common::backoff`]).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use common::{events, paths, query, Draft, Heartbeat, NewNotification, Notification, Selection};
use eventsource_stream::Eventsource;
use futures::StreamExt;

/// How long `listen` waits for anything (an answer, events or heartbeats) before it
/// assumes the connection is dead, until the server has said how often it sends heartbeats.
const DEFAULT_SILENCE: Duration = Duration::from_secs(45);

/// A running hub as its clients see it: where it is, the token they show, and for
/// `https://` a private CA to trust besides the system's.
pub struct Remote {
    url: String,
    token: Option<String>,
    client: reqwest::Client,
}

impl Remote {
    /// The hub at `url`; `ca` is a PEM file of certificates to trust (a private CA, a
    /// self-signed certificate). Fails with the reason when `ca` cannot be read or parsed.
    pub fn new(url: &str, token: Option<&str>, ca: Option<&Path>) -> anyhow::Result<Self> {
        let mut client = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        if let Some(ca) = ca {
            let pem = std::fs::read(ca)
                .with_context(|| format!("cannot read the CA file {}", ca.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} holds no PEM certificate", ca.display()))?;
            anyhow::ensure!(
                !certificates.is_empty(),
                "{} holds no PEM certificate",
                ca.display()
            );
            for certificate in certificates {
                client = client.add_root_certificate(certificate);
            }
        }
        Ok(Self {
            url: url.to_owned(),
            token: token.map(str::to_owned),
            client: client.build()?,
        })
    }
}

/// Publishes `new` on `hub` and returns what it stored. Input that breaks the publishing
/// rules is refused here, before anything is sent.
pub async fn publish(hub: &Remote, new: &NewNotification) -> anyhow::Result<Notification> {
    Draft::try_from(new.clone())?;
    let (url, token) = (hub.url.as_str(), hub.token.as_deref());
    let mut waits = 0;
    loop {
        let mut request = hub
            .client
            .post(endpoint(url, paths::NOTIFICATIONS))
            .json(new);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|err| connect_error(url, err))?;
        // Over the server's publish rate (429) or full (503): wait as long as it says.
        let retry_after = matches!(response.status().as_u16(), 429 | 503)
            .then(|| retry_after(&response))
            .flatten();
        if let Some(wait) = retry_after.filter(|_| waits < MAX_WAITS) {
            waits += 1;
            eprintln!(
                "the server says to retry in {} s ({waits}/{MAX_WAITS})",
                wait.as_secs()
            );
            tokio::time::sleep(wait).await;
            continue;
        }
        if !response.status().is_success() {
            bail!(refusal(response).await);
        }
        return response
            .json()
            .await
            .context("the server's answer is not a notification");
    }
}

/// How many times `publish` waits out a `Retry-After` before it gives up.
const MAX_WAITS: u32 = 5;

/// The `Retry-After` of a response, in seconds (at most a minute).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let secs: u64 = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(60)))
}

/// What `listen` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `[id] level: title — body`, one line each.
    Text,
    /// The event's JSON data, one line each.
    Json,
}

/// Prints the notifications of the streams `selectors` name or match (see
/// [`Selection`]) on `hub` as they arrive, reconnecting on its own after `Last-Event-ID` so
/// that none is lost or repeated. Stops after `count` if given.
pub async fn listen(
    hub: &Remote,
    selectors: &[String],
    last_event_id: Option<String>,
    count: Option<u64>,
    format: Format,
    out: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    let (client, token) = (&hub.client, hub.token.as_deref());
    let selection = Selection::parse(selectors.iter().map(String::as_str))?;
    let url = endpoint(&hub.url, paths::EVENTS);
    let mut progress = Progress {
        last_event_id,
        printed: 0,
        count,
        several: selection.single().is_none(),
    };
    let mut connected_once = false;
    let mut delays = common::backoff::reconnect_delays(None);
    loop {
        let pairs: Vec<_> = (selection.selectors().iter())
            .map(|selector| (query::STREAM, selector.to_string()))
            .collect();
        let mut request = client.get(&url).query(&pairs);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(id) = &progress.last_event_id {
            request = request.header(common::LAST_EVENT_ID_HEADER, id);
        }
        // A link that went dead while the request was on its way answers nothing, ever.
        let Ok(sent) = tokio::time::timeout(DEFAULT_SILENCE, request.send()).await else {
            if !connected_once {
                bail!("the server at {url} did not answer within {DEFAULT_SILENCE:?}");
            }
            eprintln!("listen: no answer within {DEFAULT_SILENCE:?}");
            continue;
        };
        match sent {
            Err(err) if !connected_once => return Err(connect_error(&url, err)),
            Err(err) => eprintln!("listen: connection failed: {err}"),
            Ok(response) if response.status() == reqwest::StatusCode::NO_CONTENT => return Ok(()),
            Ok(response) if retryable(response.status()) => {
                eprintln!("listen: {}", refusal(response).await);
            }
            Ok(response) if !response.status().is_success() => bail!(refusal(response).await),
            Ok(response) => {
                connected_once = true;
                delays = common::backoff::reconnect_delays(None);
                if progress.print_events(response, format, out).await? {
                    return Ok(());
                }
            }
        }
        let delay = delays.next().unwrap_or(common::backoff::MAX_DELAY);
        eprintln!(
            "listen: reconnecting in {delay:?} from {}",
            progress.last_event_id.as_deref().unwrap_or("now")
        );
        tokio::time::sleep(delay).await;
    }
}

/// How far `listen` has got: where it resumes, and how many notifications it printed of
/// the `count` it was asked for.
struct Progress {
    last_event_id: Option<String>,
    printed: u64,
    count: Option<u64>,
    /// Whether it follows several streams, so that each line names its stream.
    several: bool,
}

impl Progress {
    /// Prints the notifications of one connection until it ends, fails or goes silent
    /// for longer than its heartbeats allow (`Ok(false)`: reconnect), or until `count`
    /// are printed (`Ok(true)`).
    async fn print_events(
        &mut self,
        response: reqwest::Response,
        format: Format,
        out: &mut impl Write,
    ) -> anyhow::Result<bool> {
        let mut events = response.bytes_stream().eventsource();
        let mut silence = DEFAULT_SILENCE;
        loop {
            let event = match tokio::time::timeout(silence, events.next()).await {
                Err(_) => {
                    eprintln!("listen: nothing heard for {silence:?}; reconnecting");
                    return Ok(false);
                }
                Ok(None) => return Ok(false),
                Ok(Some(Err(err))) => {
                    eprintln!("listen: stream interrupted: {err}");
                    return Ok(false);
                }
                Ok(Some(Ok(event))) => event,
            };
            match event.event.as_str() {
                "message" => {
                    self.last_event_id = Some(event.id.clone());
                    print(out, &event.data, format, self.several)?;
                    self.printed += 1;
                    if self.count.is_some_and(|count| self.printed >= count) {
                        return Ok(true);
                    }
                }
                events::HEARTBEAT => {
                    // The first heartbeat names where the connection starts.
                    if !event.id.is_empty() {
                        self.last_event_id = Some(event.id.clone());
                    }
                    if let Ok(beat) = serde_json::from_str::<Heartbeat>(&event.data) {
                        silence = beat.silence_limit();
                    }
                }
                events::RESET => {
                    let stream = serde_json::from_str::<serde_json::Value>(&event.data)
                        .ok()
                        .and_then(|data| Some(format!(" of {}", data.get("stream")?.as_str()?)))
                        .unwrap_or_default();
                    eprintln!(
                        "listen: the server no longer has every event{stream} after {}; some were missed",
                        self.last_event_id.as_deref().unwrap_or("the start")
                    );
                    self.last_event_id = Some(event.id.clone());
                }
                _ => {}
            }
        }
    }
}

/// `path` on the server at `base` (with or without a trailing slash).
fn endpoint(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// Statuses worth waiting out (a restart behind a proxy, rate limits), not giving up on.
fn retryable(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
}

/// Prints one notification's `data`: as it came, or as a line of text (`[id]`, or
/// `[stream id]` for a listener of `several` streams).
fn print(out: &mut impl Write, data: &str, format: Format, several: bool) -> anyhow::Result<()> {
    match format {
        Format::Json => writeln!(out, "{data}")?,
        Format::Text => match serde_json::from_str::<Notification>(data) {
            Ok(n) => {
                let tag = if several {
                    format!("{} {}", n.stream, n.id)
                } else {
                    n.id.clone()
                };
                write!(out, "[{tag}] {}: {}", n.level.as_str(), n.title)?;
                if n.body.is_empty() {
                    writeln!(out)?;
                } else {
                    writeln!(out, " — {}", n.body.replace('\n', " ⏎ "))?;
                }
            }
            Err(_) => writeln!(out, "{data}")?,
        },
    }
    out.flush()?;
    Ok(())
}

/// The error for a server that could not be reached at all, naming the root cause.
fn connect_error(url: &str, err: reqwest::Error) -> anyhow::Error {
    anyhow!("cannot reach the server at {url}: {}", root_cause(&err))
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The server's own reason for a 4xx/5xx, from its JSON body.
async fn refusal(response: reqwest::Response) -> String {
    let status = response.status();
    let reason = match response.json::<common::ErrorBody>().await {
        Ok(body) => body.error,
        Err(_) => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    format!("the server answered {}: {reason}", status.as_u16())
}

//! Connecting to NATS: retries until the server answers, and reports connection events.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::{Client, ConnectOptions, Event};
use tokio::sync::watch;

use crate::backoff::Backoff;

mod creds;
mod nkey;
mod signing;
mod tls;
pub use creds::{NatsCreds, creds_file};
pub use nkey::{NkeySeed, seed_file};
pub use tls::NatsTls;

/// Where NATS is unless `NATS_URL` says otherwise.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// Messages the client holds for one subscription that its reader has not taken yet (the
/// client's own default); it drops the next ones and reports a slow consumer.
pub const SUBSCRIPTION_CAPACITY: usize = 64 * 1024;

/// Where NATS is and how to reach it: the `NATS_URL` setting every service that talks to NATS
/// reads, checked when it is parsed (an empty list or an entry that is not a server address
/// stops the service at start with the entry named, its password hidden, rather than on its
/// first connection attempt), and the TLS settings of [`NatsTls`].
#[derive(clap::Args, Debug, Clone)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated; credentials as `nats://user:password@host` or
    /// `nats://token@host`.
    #[arg(
        long = "nats-url",
        env = "NATS_URL",
        default_value = DEFAULT_URL,
        hide_env_values = true,
        value_parser = Quiet(checked_url)
    )]
    pub url: String,

    /// File holding the NKey seed (`SU...`) of this service's NATS user, for a server that
    /// lists the user by its public key: no secret crosses the wire.
    #[arg(long = "nats-nkey-file", env = "PULSE_NATS_NKEY_FILE",
          value_name = "PULSE_NATS_NKEY_FILE", hide_env_values = true,
          value_parser = Quiet(seed_file), allow_hyphen_values = true)]
    pub nkey: Option<NkeySeed>,

    /// File holding this service's NATS user credentials (`.creds`: the user's JWT and NKey
    /// seed), for a server in operator mode (decentralized JWT authentication).
    #[arg(long = "nats-creds-file", env = "PULSE_NATS_CREDS_FILE",
          value_name = "PULSE_NATS_CREDS_FILE", hide_env_values = true,
          value_parser = Quiet(creds_file), conflicts_with = "nkey", allow_hyphen_values = true)]
    pub creds: Option<NatsCreds>,

    #[command(flatten)]
    pub tls: NatsTls,
}

impl NatsArgs {
    /// The servers of `url`, reached as it says, without TLS settings of their own.
    pub fn at(url: impl Into<String>) -> Self {
        NatsArgs {
            url: url.into(),
            nkey: None,
            creds: None,
            tls: NatsTls::default(),
        }
    }
}

/// A value parser for a setting that may hold a secret (a password in `NATS_URL`, a seed
/// given where its file was meant): unlike clap's own errors, its message does not repeat the
/// raw value, only what `check` says of it.
#[derive(Clone, Copy)]
pub struct Quiet<T>(pub fn(&str) -> Result<T, String>);

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for Quiet<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let refuse = |message: String| {
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, message + "\n").with_cmd(cmd)
        };
        let raw = value.to_str().ok_or_else(|| {
            let name = arg.and_then(clap::Arg::get_env).map_or_else(
                || "the value".to_owned(),
                |env| env.to_string_lossy().into_owned(),
            );
            refuse(format!("{name} is not valid UTF-8"))
        })?;
        (self.0)(raw).map_err(refuse)
    }
}

/// The check of `NATS_URL` ([`NatsArgs`]): every entry must be a server address (`nats://` or
/// `tls://`); the message hides any password.
pub fn checked_url(raw: &str) -> Result<String, String> {
    server_addrs(raw)
        .map(|_| raw.to_owned())
        .map_err(|e| format!("{e:#}"))
}

/// Connection state as seen by the client's event callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    pub connected: bool,
    /// Increases on every (re)connection, so a watcher can tell a reconnect from a blip it
    /// missed.
    pub connects: u64,
}

/// Runs `work` unless the connection `link` watches drops first (or is replaced: it dropped and
/// came back), which ends `work` and gives `None`. A reply the dropped connection was waiting
/// for (a publish's acknowledgement, a JetStream API answer) cannot come any more; waiting out
/// its timeout would only hold back what a reconnect is for. Runs `work` to its end when the
/// client is gone and the state can no longer change.
pub async fn unless_dropped<T>(
    link: &watch::Receiver<LinkState>,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    let mut watch = link.clone();
    let since = *watch.borrow_and_update();
    let dropped = async move {
        let changed = watch
            .wait_for(|now| !now.connected || now.connects != since.connects)
            .await
            .is_ok();
        if !changed {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        biased;
        done = work => Some(done),
        () = dropped => None,
    }
}

/// Resolves once the connection `link` watches is up (at once when it is); never when the
/// client is gone.
pub async fn connected(link: &watch::Receiver<LinkState>) {
    let gone = link.clone().wait_for(|now| now.connected).await.is_err();
    if gone {
        std::future::pending::<()>().await;
    }
}

/// Resolves once the connection `link` watches has been down for `grace` without a break:
/// a reconnect within it starts the count again. Never when the client is gone.
pub async fn away_for(link: &watch::Receiver<LinkState>, grace: std::time::Duration) {
    let mut watch = link.clone();
    loop {
        let gone = watch.wait_for(|now| !now.connected).await.is_err();
        if gone {
            return std::future::pending().await;
        }
        tokio::select! {
            () = tokio::time::sleep(grace) => return,
            back = async { watch.wait_for(|now| now.connected).await.is_ok() } => if !back {
                return std::future::pending().await;
            },
        }
    }
}

/// A NATS client plus a watch of its connection state.
pub struct NatsLink {
    pub client: Client,
    pub state: watch::Receiver<LinkState>,
}

/// Starts connecting to `url` as `name` and returns at once: the client connects, and
/// reconnects, in the background, and `state` says when it is connected. For a service that
/// must answer (health checks, a 503) while NATS is away. Each subscription holds up to
/// `subscription_capacity` messages its reader has not taken; `on_slow_consumer` is called
/// for each one dropped beyond them.
pub async fn connect_in_background(
    nats: &NatsArgs,
    name: &str,
    subscription_capacity: usize,
    on_slow_consumer: impl Fn() + Send + Sync + 'static,
) -> anyhow::Result<NatsLink> {
    nats.tls.check()?;
    let (tx, rx) = watch::channel(LinkState {
        connected: false,
        connects: 0,
    });
    let options = options(
        nats,
        name,
        std::sync::Arc::new(tx),
        std::sync::Arc::new(on_slow_consumer),
    )
    .subscription_capacity(subscription_capacity)
    .retry_on_initial_connect();
    let client = options
        .connect(server_addrs(&nats.url)?)
        .await
        .with_context(|| format!("invalid NATS_URL {}", redact(&nats.url)))?;
    tokio::spawn(diagnose_while_down(
        nats.clone(),
        format!("{name}-probe"),
        rx.clone(),
    ));
    Ok(NatsLink { client, state: rx })
}

/// How long a background link may be down before [`diagnose_while_down`] looks into why, and
/// how often it looks again.
const DIAGNOSE_AFTER: Duration = Duration::from_secs(5);
const DIAGNOSE_EVERY: Duration = Duration::from_secs(30);

/// While the link `state` watches is down (from [`DIAGNOSE_AFTER`] on, then after each
/// [`DIAGNOSE_EVERY`] and another [`DIAGNOSE_AFTER`]), connects to `nats` once more itself, as
/// `name`, and logs why that fails. The client's own reconnects report only the kind of
/// failure ("IO error"), which does not tell an operator a certificate no configured
/// authority signed from a refused password or a server that does not talk TLS. Ends when
/// the connection's state can no longer change; a client dropped while NATS is away keeps
/// its reconnecting task, and this one with it, until NATS answers (the services hold
/// theirs for their whole life).
async fn diagnose_while_down(nats: NatsArgs, name: String, state: watch::Receiver<LinkState>) {
    let gone = || async {
        let _ = state.clone().wait_for(|_| false).await;
    };
    loop {
        tokio::select! {
            () = away_for(&state, DIAGNOSE_AFTER) => {}
            () = gone() => return,
        }
        // Reached: the client's own reconnect is about to succeed too.
        if let Err(e) = connect_once(&nats, &name).await {
            tracing::warn!(
                error = %e,
                "NATS unreachable: a connection attempt made to see why failed"
            );
        }
        tokio::select! {
            () = tokio::time::sleep(DIAGNOSE_EVERY) => {}
            () = connected(&state) => {}
            () = gone() => return,
        }
    }
}

/// The servers named by `NATS_URL`: one URL, or several separated by commas. The client reads
/// a whole string as one URL (and fails on the first comma), so a list is handed to it as
/// separate addresses; it then picks among them and fails over to the others.
pub fn server_addrs(urls: &str) -> anyhow::Result<Vec<async_nats::ServerAddr>> {
    let addrs = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            let addr = u
                .parse::<async_nats::ServerAddr>()
                .with_context(|| format!("invalid NATS_URL entry {}", redact(u)))?;
            // The client is built without WebSocket support: it would speak plain TCP to such
            // an address, without TLS whatever was asked, credentials included.
            anyhow::ensure!(
                !addr.is_websocket(),
                "invalid NATS_URL entry {}: ws:// and wss:// are not supported; use nats:// or tls://",
                redact(u)
            );
            Ok(addr)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(!addrs.is_empty(), "NATS_URL names no server");
    Ok(addrs)
}

/// The client's options: credentials from the URL, the TLS settings, endless reconnects,
/// connection events mirrored into `events`, and [`SUBSCRIPTION_CAPACITY`].
fn options(
    nats: &NatsArgs,
    name: &str,
    events: std::sync::Arc<watch::Sender<LinkState>>,
    slow: std::sync::Arc<dyn Fn() + Send + Sync>,
) -> ConnectOptions {
    client_options(nats)
        .name(name)
        .connection_timeout(Duration::from_secs(3))
        .max_reconnects(None)
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .event_callback(move |event| {
            let events = events.clone();
            let slow = slow.clone();
            async move {
                match event {
                    Event::Connected => {
                        tracing::info!("NATS connected");
                        events.send_modify(|s| {
                            s.connected = true;
                            s.connects += 1;
                        });
                    }
                    Event::Disconnected => {
                        tracing::warn!("NATS disconnected; reconnecting");
                        events.send_modify(|s| s.connected = false);
                    }
                    Event::SlowConsumer(_) => slow(),
                    Event::ServerError(e) => tracing::warn!(error = %e, "NATS server error"),
                    Event::ClientError(e) => tracing::warn!(error = %e, "NATS client error"),
                    other => tracing::debug!(event = %other, "NATS event"),
                }
            }
        })
}

/// Connects to `nats` as `name`, retrying with backoff until it succeeds or `give_up` resolves.
/// Slow-consumer events are counted by `on_slow_consumer`, never logged one by one.
pub async fn connect(
    nats: &NatsArgs,
    name: &str,
    on_slow_consumer: impl Fn() + Send + Sync + 'static,
    give_up: impl std::future::Future<Output = ()>,
) -> anyhow::Result<NatsLink> {
    nats.tls.check()?;
    let (tx, rx) = watch::channel(LinkState {
        connected: false,
        connects: 0,
    });
    let tx = std::sync::Arc::new(tx);
    let on_slow_consumer: std::sync::Arc<dyn Fn() + Send + Sync> =
        std::sync::Arc::new(on_slow_consumer);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let shown = redact(&nats.url);
    // A URL that cannot be read will not become readable by retrying.
    let servers = server_addrs(&nats.url)?;
    tokio::pin!(give_up);
    loop {
        let options = options(nats, name, tx.clone(), on_slow_consumer.clone());
        let attempt = tokio::select! {
            r = options.connect(servers.clone()) => r,
            () = &mut give_up => anyhow::bail!("gave up connecting to NATS at {shown}"),
        };
        match attempt {
            Ok(client) => {
                tx.send_modify(|s| {
                    s.connected = true;
                    if s.connects == 0 {
                        s.connects = 1;
                    }
                });
                return Ok(NatsLink { client, state: rx });
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, url = %shown, retry_in = ?delay, "cannot connect to NATS");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = &mut give_up => {
                        return Err(e).with_context(|| format!("cannot connect to NATS at {shown}"));
                    }
                }
            }
        }
    }
}

/// How long a stopping service waits for NATS to take what its client still buffers.
pub const FLUSH_ON_EXIT: Duration = Duration::from_secs(2);

/// Flushes `client` before the process exits, for at most [`FLUSH_ON_EXIT`]. While NATS is
/// unreachable a flush waits for the next connection, which may never come: a shutdown must
/// not wait for it, so a client that is not connected is not flushed at all. What was not
/// flushed is lost, and said so.
pub async fn flush_before_exit(client: &Client) {
    if client.connection_state() != async_nats::connection::State::Connected {
        tracing::warn!("NATS is unreachable; exiting without the messages still buffered");
        return;
    }
    match tokio::time::timeout(FLUSH_ON_EXIT, client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot flush NATS before exiting"),
        Err(_) => tracing::warn!(
            waited = ?FLUSH_ON_EXIT,
            "NATS did not take the last messages in time; exiting without them"
        ),
    }
}

/// The options every client of `nats` starts from: the credentials in its URL (or its NKey,
/// or its `.creds` file) and its TLS settings.
pub fn client_options(nats: &NatsArgs) -> ConnectOptions {
    let options = match (&nats.nkey, &nats.creds) {
        (Some(seed), _) => seed.0.options(),
        (None, Some(creds)) => creds.0.options(),
        (None, None) => with_url_credentials(ConnectOptions::new(), &nats.url),
    };
    nats.tls.apply(options)
}

/// Connects to `nats` as `name` once, without retrying: for a tool that reports a server it
/// cannot reach rather than wait for it, and to find out why a link stays down. The error
/// names the servers (credentials hidden) and why.
pub async fn connect_once(nats: &NatsArgs, name: &str) -> anyhow::Result<Client> {
    nats.tls.check()?;
    let servers = server_addrs(&nats.url)?;
    client_options(nats)
        .name(name)
        .connection_timeout(Duration::from_secs(3))
        .connect(servers)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", redact(&nats.url)))
}

/// Credentials written into a server URL — `nats://user:password@host:4222` or
/// `nats://token@host:4222` (percent-encoded) — applied to `options`. The client does not send
/// them by itself. The first URL of a comma-separated list that carries any is used.
pub fn with_url_credentials(options: ConnectOptions, urls: &str) -> ConnectOptions {
    let Some(addr) = urls
        .split(',')
        .filter_map(|u| u.trim().parse::<async_nats::ServerAddr>().ok())
        .find(|a| a.has_user_pass())
    else {
        return options;
    };
    let user = decode(addr.username().unwrap_or_default());
    match addr.password() {
        Some(password) => options.user_and_password(user, decode(password)),
        None => options.token(user),
    }
}

/// `url` with every user name, password or token replaced by `***`, for logs and errors.
pub fn redact(urls: &str) -> String {
    urls.split(',')
        .map(|u| match (u.find("://"), u.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}***{}", &u[..scheme + 3], &u[at..])
            }
            _ => u.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Whether `e` (or what caused it) is JetStream saying the stream could not store a message
/// (error 10077): its storage failed, e.g. its files were removed under the server, as a
/// stream created again while the server still removed the deleted one's files may find.
/// Such a stream refuses every write from then on, until it is created again.
pub fn store_failed(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source()).any(|e| {
        e.downcast_ref::<async_nats::jetstream::Error>()
            .is_some_and(|j| {
                j.error_code() == async_nats::jetstream::ErrorCode::STREAM_STORE_FAILED
            })
    })
}

#[cfg(test)]
mod tests;

//! The JetStream streams of the contract (and the device registry's bucket), created or
//! updated idempotently at activation, and created again whenever the active poller finds one
//! missing ([`missing`]), announced deleted ([`deletions`]) or unable to store
//! ([`delete_unstorable`]); a deleted tenant's subjects purged from them ([`purge_tenant`]).
//!
//! The engine, the relay and the registry report their failed writes ([`WriteFailures`]); any
//! of them makes the engine look at the streams before its next cycle.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use futures::stream::SelectAll;
use pulse_proto::TenantId;
use pulse_proto::subject::{
    DEVICES_BUCKET, DEVICES_STREAM, EVENTS_STREAM, EVENTS_STREAM_SUBJECTS, PREFIX, STATE_STREAM,
    STATE_STREAM_SUBJECTS,
};

use crate::config::PollerConfig;
use crate::metrics::Metrics;

/// How long JetStream remembers an event's `Nats-Msg-Id` (at most the events' age).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// Last value per snapshot subject, readable by direct get.
pub fn state_stream(config: &PollerConfig) -> stream::Config {
    stream::Config {
        name: STATE_STREAM.to_owned(),
        description: Some("Pulse: newest alerts, fleet and telemetry message per subject".into()),
        subjects: STATE_STREAM_SUBJECTS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        max_messages_per_subject: 1,
        discard: stream::DiscardPolicy::Old,
        storage: stream::StorageType::File,
        num_replicas: config.stream_replicas,
        allow_direct: true,
        ..Default::default()
    }
}

/// The events stream's description, which names its numbering (see `retire_old_numbering`).
pub const EVENTS_DESCRIPTION: &str = pulse_proto::subject::EVENTS_STREAM_DESCRIPTION;

/// Bounded history of events, for clients recovering after a disconnect.
pub fn events_stream(config: &PollerConfig) -> stream::Config {
    stream::Config {
        name: EVENTS_STREAM.to_owned(),
        description: Some(EVENTS_DESCRIPTION.into()),
        subjects: EVENTS_STREAM_SUBJECTS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        max_age: config.events_max_age(),
        max_bytes: config.events_max_bytes,
        max_messages_per_subject: config.events_max_per_topic,
        // The relay sends an event again when it cannot tell whether the first send was
        // stored (a lost acknowledgement, a failover); its `Nats-Msg-Id` makes the repeat a
        // no-op within this window.
        duplicate_window: DUPLICATE_WINDOW.min(config.events_max_age()),
        discard: stream::DiscardPolicy::Old,
        storage: stream::StorageType::File,
        num_replicas: config.stream_replicas,
        allow_direct: true,
        ..Default::default()
    }
}

/// Creates both streams or brings their configuration up to date. Safe to run from several
/// processes at once: a lost creation race is retried as an update.
pub async fn ensure(js: &jetstream::Context, config: &PollerConfig) -> anyhow::Result<()> {
    retire_old_numbering(js).await?;
    for wanted in [state_stream(config), events_stream(config)] {
        let name = wanted.name.clone();
        let mut last_err = None;
        for _ in 0..3 {
            match js.create_or_update_stream(wanted.clone()).await {
                Ok(_) => {
                    last_err = None;
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        if let Some(e) = last_err {
            return Err(e).with_context(|| format!("cannot create or update stream {name}"));
        }
    }
    crate::registry::ensure(js, config.stream_replicas).await?;
    Ok(())
}

/// The streams [`ensure`] creates (the bucket's included) that do not exist: NATS restarted
/// without its storage, or someone deleted one. Any other failure to look is an error.
pub async fn missing(js: &jetstream::Context) -> anyhow::Result<Vec<String>> {
    let mut missing = Vec::new();
    for name in kept() {
        match js.get_stream(&name).await {
            Ok(_) => {}
            Err(e) if not_found(&e) => missing.push(name),
            Err(e) => return Err(e).with_context(|| format!("cannot look stream {name} up")),
        }
    }
    Ok(missing)
}

/// The device bucket's stream.
pub fn bucket_stream() -> String {
    pulse_common::device_bucket::stream_config(1).name
}

/// The streams the poller keeps: those [`ensure`] creates, the bucket's included.
fn kept() -> [String; 3] {
    [
        STATE_STREAM.to_owned(),
        EVENTS_STREAM.to_owned(),
        bucket_stream(),
    ]
}

/// Where the server announces that `stream` was deleted.
pub fn deleted_advisory(stream: &str) -> String {
    format!("$JS.EVENT.ADVISORY.STREAM.DELETED.{stream}")
}

/// One of the server's announcements that a stream was deleted: which, and when by the
/// server's clock.
#[derive(Debug, serde::Deserialize)]
pub struct Deletion {
    pub stream: String,
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: time::OffsetDateTime,
}

/// When stream `name` was created, by the server's clock; `None` when it does not exist.
pub async fn created(
    js: &jetstream::Context,
    name: &str,
) -> anyhow::Result<Option<time::OffsetDateTime>> {
    match js.get_stream(name).await {
        Ok(stream) => Ok(Some(stream.cached_info().created)),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot look stream {name} up")),
    }
}

/// The server's announcements that one of the streams the poller keeps was deleted, by
/// whomever ([`Deletion`]): the engine creates it again at once rather than at its next write
/// or poll. The server announces a deletion before it is done: the stream may still be found
/// for a moment, and its files are removed last.
pub async fn deletions(
    client: &async_nats::Client,
) -> Result<SelectAll<async_nats::Subscriber>, async_nats::SubscribeError> {
    let mut subscribers = Vec::new();
    for name in kept() {
        subscribers.push(client.subscribe(deleted_advisory(&name)).await?);
    }
    Ok(futures::stream::select_all(subscribers))
}

/// Failed writes to the streams since the engine last looked at them, reported by the engine,
/// the relay and the device registry; shared by clones. Storage failures are also counted
/// (`pulse_poller_store_failures_total{stream}`). And it tells the relay when the engine created
/// streams again, so that one waiting out its backoff after failed passes tries at once.
#[derive(Clone)]
pub struct WriteFailures {
    failures: Arc<parking_lot::Mutex<Failures>>,
    restored: Arc<tokio::sync::Notify>,
    metrics: Metrics,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Failures {
    /// Some write failed: a stream may be missing.
    pub any: bool,
    /// Streams that refused a write because their storage failed
    /// ([`pulse_common::nats::store_failed`]).
    pub unstorable: BTreeSet<String>,
}

impl WriteFailures {
    pub fn new(metrics: Metrics) -> Self {
        Self {
            failures: Arc::default(),
            restored: Arc::default(),
            metrics,
        }
    }

    /// A write to `stream` failed; `store_failed` tells whether its storage refused it.
    pub fn report(&self, stream: &str, store_failed: bool) {
        if store_failed {
            self.metrics.store_failed(stream);
        }
        let mut failures = self.failures.lock();
        failures.any = true;
        if store_failed {
            failures.unstorable.insert(stream.to_owned());
        }
    }

    /// The engine created streams again: they may store now. Kept until the relay next waits
    /// out a failed pass's backoff (one waiter, so at most one early try comes of it): it may
    /// be pruning when this comes.
    pub fn restored(&self) {
        self.restored.notify_one();
    }

    /// Resolves at the next [`WriteFailures::restored`], or at once for one not waited for yet.
    pub async fn next_restore(&self) {
        self.restored.notified().await;
    }

    /// Whether a write failed since the last [`Self::take`].
    pub fn pending(&self) -> bool {
        self.failures.lock().any
    }

    /// What was reported, forgotten here.
    pub fn take(&self) -> Failures {
        std::mem::take(&mut *self.failures.lock())
    }

    /// Reports again, uncounted, what [`Self::take`] returned and was not dealt with.
    pub fn put_back(&self, failures: Failures) {
        let mut pending = self.failures.lock();
        pending.any |= failures.any;
        pending.unstorable.extend(failures.unstorable);
    }
}

/// How long after creating a stream again because it could not store the poller waits before
/// doing so once more: storage that fails again at once (a failing disk) is then a problem
/// for the operator, not one to churn over.
pub const RECREATE_AT_MOST_EVERY: Duration = Duration::from_secs(60);

/// Deletes the streams of `unstorable` whose storage failed, so that [`ensure`] creates them
/// afresh; returns the ones deleted. Each holds only what the poller publishes again once it
/// is created again: the snapshots and readings, the registry, and the events the outbox
/// still holds (relayed again). Each stream is tried at most once per
/// [`RECREATE_AT_MOST_EVERY`] (per `tried`); one that cannot be deleted is logged and left
/// for the next try.
pub async fn delete_unstorable(
    js: &jetstream::Context,
    unstorable: &BTreeSet<String>,
    tried: &mut HashMap<String, Instant>,
) -> Vec<String> {
    let mut deleted = Vec::new();
    for name in unstorable {
        if tried
            .get(name)
            .is_some_and(|at| at.elapsed() < RECREATE_AT_MOST_EVERY)
        {
            continue;
        }
        tried.insert(name.clone(), Instant::now());
        match delete(js, name).await {
            Ok(()) => deleted.push(name.clone()),
            Err(e) => tracing::error!(
                stream = %name, error = format!("{e:#}"),
                "a stream that cannot store could not be deleted to be created again"
            ),
        }
    }
    deleted
}

/// Deletes stream `name`; one already gone counts as deleted. The server answers once the
/// stream's files are removed, so one created after this returns keeps its own.
pub async fn delete(js: &jetstream::Context, name: &str) -> anyhow::Result<()> {
    match js.delete_stream(name).await {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot delete stream {name}")),
    }
}

fn not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// Empties an events stream created before `seq` counted per topic (see
/// [`EVENTS_DESCRIPTION`]); the configuration update that follows marks it.
async fn retire_old_numbering(js: &jetstream::Context) -> anyhow::Result<()> {
    let mut stream = match js.get_stream(EVENTS_STREAM).await {
        Ok(stream) => stream,
        // No stream yet: it is created with the mark.
        Err(e) if not_found(&e) => return Ok(()),
        Err(e) => return Err(e).context("cannot open the events stream"),
    };
    let info = stream
        .info()
        .await
        .context("cannot read the events stream's info")?;
    if info.config.description.as_deref() == Some(EVENTS_DESCRIPTION) {
        return Ok(());
    }
    let messages = info.state.messages;
    stream
        .purge()
        .await
        .context("cannot empty the events stream of the old numbering")?;
    tracing::warn!(
        messages,
        "emptied the events stream of events numbered by the old shared sequence"
    );
    Ok(())
}

/// The highest `seq` already published to the state stream, read from its newest messages
/// that have one, so a newly active poller never goes below it. Zero only when no message of
/// the stream has one (or it holds none).
///
/// Both reads go to the stream's leader, not to a replica that may lag behind (as a direct
/// get may). Any failure is an error, for the caller to retry: a floor of zero taken by
/// mistake would let `seq` go backwards across a failover. A message without a `Pulse-Seq`
/// (not a poller's) is passed over with a warning: it carries no `seq` to stay above.
///
/// Pollers publish theirs in rising order, nearly: a publish the fence refused is sent again
/// after the rest of its batch with its older `seq`, and a deposed poller's last publish may
/// land after its successor's first. So the highest of the newest [`SEQ_TAIL`] sequences is
/// taken, not the newest alone; only when they hold no `seq` at all is the stream read further
/// back.
///
/// The stream is read back from its end in windows of sequences that double in size, each
/// read forwards message by message ("the first message from sequence n"), so a run of deleted
/// sequences (a message replaced by a newer one of its subject; subjects purged, however many)
/// costs nothing per sequence.
pub async fn newest_seq(js: &jetstream::Context) -> anyhow::Result<u64> {
    let mut stream = js
        .get_stream(STATE_STREAM)
        .await
        .context("cannot open the state stream")?;
    let state = stream
        .info()
        .await
        .context("cannot read the state stream's info")?
        .state
        .clone();
    if state.messages == 0 {
        return Ok(0);
    }
    let mut upto = state.last_sequence;
    let mut window = SEQ_TAIL;
    loop {
        let from = state.first_sequence.max(upto.saturating_sub(window - 1));
        if let Some(seq) = highest_seq_within(&stream, from, upto).await? {
            return Ok(seq);
        }
        if from <= state.first_sequence {
            return Ok(0); // every message read, none with a seq
        }
        upto = from - 1;
        window = window.saturating_mul(2);
    }
}

/// How many of the state stream's newest sequences [`newest_seq`] reads at least. The publishes
/// sent again after their batch are few (after a lost acknowledgement, or a takeover), and the
/// reads are made once per activation.
const SEQ_TAIL: u64 = 256;

/// The highest `seq` among the stream's messages `from..=upto` that have one.
async fn highest_seq_within(
    stream: &jetstream::stream::Stream,
    from: u64,
    upto: u64,
) -> anyhow::Result<Option<u64>> {
    let mut highest = None;
    let mut next = from;
    while next <= upto {
        let message = match stream.get_first_raw_message_by_subject(">", next).await {
            Ok(message) => message,
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => break,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot read the state stream's message at or after {next}")
                });
            }
        };
        if message.sequence > upto {
            break;
        }
        match pulse_seq(&message.headers) {
            Some(seq) => highest = highest.max(Some(seq)),
            None => tracing::warn!(
                subject = %message.subject, sequence = message.sequence,
                "a message of the state stream without a valid Pulse-Seq; passed over"
            ),
        }
        next = message.sequence + 1;
    }
    Ok(highest)
}

/// The `Pulse-Seq` in a message's `headers`, if it has a valid one: a whole number no greater
/// than 2^53 - 1. Beyond that a number is not a poller's (it would lose precision in
/// JavaScript), and honouring it would push every later `seq` out of the exact range.
pub(crate) fn pulse_seq(headers: &async_nats::HeaderMap) -> Option<u64> {
    let header = headers.get(pulse_proto::headers::SEQ)?;
    let seq: u64 = header.as_str().parse().ok()?;
    (seq <= pulse_proto::client::MAX_SAFE_INTEGER).then_some(seq)
}

/// Held by a relay pass from its read of the outbox until what it read is published and
/// marked, by the purges of deleted tenants ([`purge_tenant`]), once for all those of a
/// tenant-list read, and by the engine while it marks the outbox's events to be relayed again
/// into an events stream created again. A pass that read a tenant's events before the deletion
/// has sent them all by the time the purge runs: sent after it, they would stay in
/// `PULSE_EVENTS`, for a tenant created again with the id to see. A pass that reads after the
/// deletion finds none (they go with the tenant's rows). And no pass acknowledged by a lost
/// events stream marks its events relayed after they were marked to be relayed again.
#[derive(Clone, Default)]
pub struct PassGate(Arc<tokio::sync::Mutex<()>>);

impl PassGate {
    /// Waits for the pass (or purge) under way, then holds the gate until the guard drops.
    pub async fn hold(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.0.clone().lock_owned().await
    }
}

/// How long one purge request may take before it counts as refused.
const PURGE_TIMEOUT: Duration = Duration::from_secs(2);

/// Purges `tenant`'s keys from the device bucket, then every subject of it from the events
/// and state streams (no delete markers left behind: nothing of it stays). The state stream
/// comes last: once the tenant's snapshots are gone, all of it is.
pub async fn purge_tenant(js: &jetstream::Context, tenant: &TenantId) -> anyhow::Result<()> {
    let mut js = js.clone();
    js.set_timeout(PURGE_TIMEOUT);
    let subjects = format!("{PREFIX}.{tenant}.>");
    for (stream, filter) in [
        (
            DEVICES_STREAM.to_owned(),
            format!("$KV.{DEVICES_BUCKET}.{tenant}.>"),
        ),
        (EVENTS_STREAM.to_owned(), subjects.clone()),
        (STATE_STREAM.to_owned(), subjects),
    ] {
        let handle = js.get_stream_no_info(&stream).await?;
        let purged = handle.purge().filter(filter).await;
        purged.with_context(|| format!("cannot purge {tenant}'s subjects from {stream}"))?;
    }
    Ok(())
}

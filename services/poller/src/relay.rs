//! The event relay: moves events from the database outbox (`events`) to NATS, in `seq` order
//! per topic, and forgets them after `PULSE_EVENTS_MAX_AGE`.
//!
//! An event is marked relayed only once JetStream acknowledged it and every earlier event of
//! its topic. Whatever is not marked is sent again on the next pass, by this poller or by the
//! one that takes over after a crash; its `Nats-Msg-Id` (`<tenant>.<topic>.<seq>`) makes
//! JetStream store it once. An event written while NATS is down waits in the outbox until NATS
//! is back. Only the active poller relays.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use parking_lot::Mutex;
use pulse_common::backoff::Backoff;
use pulse_common::nats::{LinkState, unless_dropped};
use pulse_proto::subject::{EVENTS_RELAYED_PER_TOPIC_PASS, EVENTS_STREAM};
use pulse_proto::{StoredEvent, Subject, TenantId, Timestamp, Topic};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::changes::ChangeFeed;
use crate::metrics::{Kind, Metrics, Query, Stage};
use crate::publisher::{self, Outgoing};
use crate::streams::{PassGate, WriteFailures};

/// Most events read and sent in one pass; a full pass is followed at once by another.
pub const BATCH: i64 = 1000;
/// Most events of one topic in a pass. So that one topic's backlog (after a NATS outage, say)
/// does not hold back the other topics and tenants, a pass shares [`BATCH`] between the topics
/// with a backlog (`BATCH / topics`, at least one each, at most this), and each pass starts
/// with the topic after the last one the previous pass reached: with more than [`BATCH`]
/// topics waiting, the next pass goes on where this one stopped. Part of the contract
/// ([`EVENTS_RELAYED_PER_TOPIC_PASS`]): it bounds how far out of `seq` order the stream may
/// hold a topic's events, which readers of its history rely on.
pub const PER_TOPIC: i64 = EVENTS_RELAYED_PER_TOPIC_PASS as i64;
/// Safety net: the outbox is read this often even without a notification.
const POLL: Duration = Duration::from_secs(1);

/// How often events older than the retention are deleted from the outbox.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Most rows deleted by one statement, so pruning never holds long locks.
const PRUNE_BATCH: i64 = 10_000;
/// How long one round of pruning may go on; the rest follows at the next wake-up, after the
/// relay's turn.
const PRUNE_BUDGET: Duration = Duration::from_millis(500);

/// A relay pass fails the way an engine cycle does: reading the database, or publishing.
pub use crate::engine::CycleError as RelayError;

/// One outbox row.
#[derive(sqlx::FromRow)]
struct Row {
    tenant_id: String,
    topic: String,
    seq: i64,
    event: String,
    /// As stored, not decoded: see [`StoredEvent`].
    payload: String,
    created_at: OffsetDateTime,
    /// The most events of one topic this pass reads.
    share: i64,
}

/// How a [`Relay::drain`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drained {
    /// Every event the outbox held was relayed.
    Empty,
    /// A pass failed; what it did not relay waits for the next.
    Failed,
}

/// What one round of pruning did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Events deleted.
    pub deleted: u64,
    /// Whether expired events may be left: the next wake-up prunes again.
    pub more: bool,
}

/// What one relay pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Events read from the outbox (and sent).
    pub read: usize,
    /// Whether events may be left: the next pass follows at once.
    pub more: bool,
}

pub struct Relay {
    pool: PgPool,
    js: jetstream::Context,
    metrics: Metrics,
    /// Where failed sends are reported, for the engine to look at the events stream.
    failures: WriteFailures,
    gate: PassGate,
    max_age: Duration,
    /// The last `(tenant, topic)` the previous pass read: the next starts after it.
    reached: Mutex<(String, String)>,
}

impl Relay {
    pub fn new(
        pool: PgPool,
        js: jetstream::Context,
        metrics: Metrics,
        failures: WriteFailures,
        max_age: Duration,
    ) -> Self {
        Self {
            pool,
            js,
            metrics,
            failures,
            gate: PassGate::default(),
            max_age,
            reached: Mutex::default(),
        }
    }

    /// Shares `gate` with the engine's purges of deleted tenants ([`PassGate`]).
    pub fn gated_by(self, gate: PassGate) -> Self {
        Self { gate, ..self }
    }

    /// Sends up to [`BATCH`] unrelayed events, shared between the topics with a backlog (see
    /// [`PER_TOPIC`]), and marks those acknowledged.
    #[tracing::instrument(name = "relay_events", skip_all, fields(read, relayed))]
    pub async fn relay_once(&self) -> Result<Pass, RelayError> {
        // Held from the read until what was read is published and marked ([`PassGate`]).
        let pass = self.gate.hold().await;
        let started = Instant::now();
        let reached = self.reached.lock().clone();
        // The topics with a backlog, found by skipping along the backlog index from one topic
        // to the next (not by reading the whole backlog): those after `reached`, then from the
        // first one round to `reached`. Then each topic's share of its oldest events.
        let rows: Vec<Row> = sqlx::query_as(
            "WITH RECURSIVE after_reached(tenant_id, topic) AS ( \
                 (SELECT tenant_id, topic FROM events \
                   WHERE relayed_at IS NULL AND (tenant_id, topic) > ($3::text, $4::text) \
                   ORDER BY tenant_id, topic LIMIT 1) \
               UNION ALL \
                 SELECT n.tenant_id, n.topic FROM after_reached t CROSS JOIN LATERAL ( \
                   SELECT tenant_id, topic FROM events \
                    WHERE relayed_at IS NULL AND (tenant_id, topic) > (t.tenant_id, t.topic) \
                    ORDER BY tenant_id, topic LIMIT 1) n \
             ), up_to_reached(tenant_id, topic) AS ( \
                 (SELECT tenant_id, topic FROM events \
                   WHERE relayed_at IS NULL AND (tenant_id, topic) <= ($3::text, $4::text) \
                   ORDER BY tenant_id, topic LIMIT 1) \
               UNION ALL \
                 SELECT n.tenant_id, n.topic FROM up_to_reached t CROSS JOIN LATERAL ( \
                   SELECT tenant_id, topic FROM events \
                    WHERE relayed_at IS NULL AND (tenant_id, topic) > (t.tenant_id, t.topic) \
                      AND (tenant_id, topic) <= ($3::text, $4::text) \
                    ORDER BY tenant_id, topic LIMIT 1) n \
             ), topics AS MATERIALIZED ( \
                 SELECT * FROM ( \
                     (SELECT tenant_id, topic, 0 AS lap FROM after_reached LIMIT $1) \
                     UNION ALL \
                     (SELECT tenant_id, topic, 1 AS lap FROM up_to_reached LIMIT $1)) w \
                  ORDER BY lap, tenant_id, topic LIMIT $1 \
             ), share AS ( \
                 SELECT greatest(1, least($2, $1 / greatest(count(*), 1))) AS n FROM topics \
             ) \
             SELECT e.tenant_id::text, e.topic::text, e.seq, e.event, e.payload::text, \
                    e.created_at, \
                    (SELECT n FROM share) AS share \
               FROM topics t CROSS JOIN LATERAL ( \
                 SELECT * FROM events \
                  WHERE tenant_id = t.tenant_id AND topic = t.topic AND relayed_at IS NULL \
                  ORDER BY seq LIMIT (SELECT n FROM share)) e \
              ORDER BY t.lap, e.tenant_id, e.topic, e.seq",
        )
        .bind(BATCH)
        .bind(PER_TOPIC)
        .bind(&reached.0)
        .bind(&reached.1)
        .fetch_all(&self.pool)
        .await?;
        self.metrics.observe_query(Query::Events, started);
        let read = rows.len();
        tracing::Span::current().record("read", read);
        if rows.is_empty() {
            self.metrics.relay_backlog.set(0);
            return Ok(Pass { read, more: false });
        }
        let share = rows[0].share;
        if let Some(last) = rows.last() {
            *self.reached.lock() = (last.tenant_id.clone(), last.topic.clone());
        }
        let mut batch = Vec::with_capacity(rows.len());
        // The seqs sent per topic, in order, to find how far each topic got.
        let mut sent: HashMap<(TenantId, Topic), Vec<u64>> = HashMap::new();
        // Events too big for the NATS server, passed over (see below).
        let mut passed_over = Vec::new();
        let limit = publisher::payload_limit(&self.js);
        for row in rows {
            // The schema only stores valid ids; a row that is not is left in the outbox.
            let (Ok(tenant), Ok(topic)) =
                (TenantId::parse(&row.tenant_id), Topic::parse(&row.topic))
            else {
                tracing::error!(tenant = %row.tenant_id, topic = %row.topic, "outbox row with an invalid id");
                continue;
            };
            let seq = row.seq as u64;
            // PostgreSQL writes `jsonb` out as valid JSON: this cannot fail, short of a bug.
            let payload = match pulse_proto::message::stored_payload(row.payload) {
                Ok(payload) => payload,
                Err(e) => {
                    tracing::error!(%tenant, %topic, seq, error = %e, "outbox payload is not JSON");
                    continue;
                }
            };
            let message = StoredEvent {
                kind: Default::default(),
                tenant_id: tenant.clone(),
                topic: topic.clone(),
                event: row.event,
                seq,
                ts: Timestamp(row.created_at),
                payload,
            };
            let key = (tenant.clone(), topic.clone(), seq, row.created_at);
            let subject = Subject::Events(tenant.clone(), topic.clone());
            let out = Outgoing {
                msg_id: Some(pulse_proto::headers::event_msg_id(&tenant, &topic, seq)),
                ..Outgoing::new(key, subject, seq, &message)?
            };
            if out.payload.len() > limit {
                // It would fail on every pass and hold back the rest of its topic for good.
                // Passed over, it is a gap that subscribers are told of (`events_reset`,
                // reason `gap`); `GET /api/v2/events` still lists it.
                self.metrics.oversized(Kind::Events);
                tracing::error!(
                    %tenant, %topic, seq, bytes = out.payload.len(), limit,
                    "event too big for the NATS server's max_payload; passed over"
                );
                passed_over.push(out.key);
            } else {
                batch.push(out);
            }
            sent.entry((tenant, topic)).or_default().push(seq);
        }
        // Events may be left behind: the pass was full, or a topic gave all it may give.
        let more = read as i64 >= BATCH || sent.values().any(|seqs| seqs.len() as i64 >= share);
        let (done, err) = publisher::publish_all(&self.js, batch, None).await;

        // A topic counts as relayed up to the first event not acknowledged: what follows it
        // is sent again, so every event is stored (once, by its Msg-Id). Usually in order; but
        // when the stream's leader changes mid-pass, later events of the pass may be stored
        // before the earlier ones are sent again — readers go by `Pulse-Seq`, not by position.
        let mut acked: HashMap<(TenantId, Topic), HashSet<u64>> = HashMap::new();
        let now = OffsetDateTime::now_utc();
        for (tenant, topic, seq, created_at) in done {
            let age = (now - created_at).as_seconds_f64().max(0.0);
            self.metrics.relay_seconds.observe(age);
            acked.entry((tenant, topic)).or_default().insert(seq);
        }
        let oversized = passed_over.len();
        for (tenant, topic, seq, _) in passed_over {
            acked.entry((tenant, topic)).or_default().insert(seq);
        }
        let (mut tenants, mut topics, mut upto) = (Vec::new(), Vec::new(), Vec::new());
        let mut relayed = 0;
        for (key, seqs) in &sent {
            let Some(ok) = acked.get(key) else { continue };
            let prefix = seqs.iter().take_while(|s| ok.contains(s)).count();
            if prefix > 0 {
                relayed += prefix;
                tenants.push(key.0.to_string());
                topics.push(key.1.to_string());
                upto.push(seqs[prefix - 1] as i64);
            }
        }
        if !tenants.is_empty() {
            sqlx::query(
                "UPDATE events e SET relayed_at = now() \
                   FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(tenant_id, topic, upto) \
                  WHERE e.tenant_id = u.tenant_id AND e.topic = u.topic \
                    AND e.seq <= u.upto AND e.relayed_at IS NULL",
            )
            .bind(&tenants)
            .bind(&topics)
            .bind(&upto)
            .execute(&self.pool)
            .await?;
        }
        // Marked before the gate opens: the engine marking the outbox's events to be relayed
        // again (an events stream created again) waits for this, and none of the events this
        // pass's lost stream acknowledged is marked relayed after it.
        drop(pass);
        self.metrics
            .published(Kind::Events, relayed.saturating_sub(oversized) as u64);
        let backlog = if !more {
            (read - relayed) as i64
        } else {
            sqlx::query_scalar("SELECT count(*) FROM events WHERE relayed_at IS NULL")
                .fetch_one(&self.pool)
                .await?
        };
        self.metrics.relay_backlog.set(backlog);
        tracing::Span::current().record("relayed", relayed);
        match err {
            Some(e) => Err(e.into()),
            None => Ok(Pass { read, more }),
        }
    }

    /// Deletes relayed events older than the retention (their idempotency keys go with them),
    /// a batch at a time for as long as `budget` lasts: what is left (say, after the retention
    /// was lowered, millions of rows) waits for the next round, so that relaying is held up by
    /// one round at most, not by the whole prune.
    pub async fn prune(&self, budget: Duration) -> Result<Pruned, RelayError> {
        let started = Instant::now();
        let max_age = self.max_age.as_secs_f64();
        let mut deleted = 0;
        loop {
            let n = sqlx::query(
                "DELETE FROM events WHERE ctid = ANY(ARRAY( \
                   SELECT ctid FROM events \
                    WHERE created_at < now() - make_interval(secs => $1) \
                      AND relayed_at IS NOT NULL \
                    LIMIT $2))",
            )
            .bind(max_age)
            .bind(PRUNE_BATCH)
            .execute(&self.pool)
            .await?
            .rows_affected();
            deleted += n;
            let more = n == PRUNE_BATCH as u64;
            if !more || started.elapsed() >= budget {
                return Ok(Pruned { deleted, more });
            }
        }
    }

    /// Relays until `stop` is cancelled: at once on a notification, every second as a safety
    /// net, and after NATS reconnects; paused while NATS is down; after a failed pass, once its
    /// backoff is over (or at once when NATS reconnects or streams are created again).
    pub async fn run(
        self,
        feed: ChangeFeed,
        mut nats: watch::Receiver<LinkState>,
        stop: CancellationToken,
    ) {
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_prune: Option<Instant> = None;
        let mut prune_more = false;
        // After a failed pass the next waits, longer each time: a stream that cannot store
        // (no leader, not there) while the link is up would otherwise have every commit read
        // and send the whole backlog again.
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            let mut failed = false;
            if nats.borrow().connected {
                // A pass stuck on an unreachable database ends with leadership; one waiting for
                // acknowledgements a dropped NATS connection cannot send ends at once, and what it
                // had not marked relayed goes again (once: JetStream keeps it by its Msg-Id).
                tokio::select! {
                    drained = unless_dropped(&nats, self.drain()) => {
                        failed = drained == Some(Drained::Failed);
                    }
                    () = stop.cancelled() => return,
                }
            } else {
                // Nothing is relayed while NATS is down: the gauge shows what piles up.
                match sqlx::query_scalar("SELECT count(*) FROM events WHERE relayed_at IS NULL")
                    .fetch_one(&self.pool)
                    .await
                {
                    Ok(n) => {
                        self.metrics.relay_backlog.set(n);
                    }
                    Err(e) => tracing::debug!(error = %e, "cannot count the outbox backlog"),
                }
            }
            // Pruning touches only relayed rows, so it goes on while NATS is down.
            if prune_more || last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(Instant::now());
                let pruned = tokio::select! {
                    r = self.prune(PRUNE_BUDGET).instrument(tracing::debug_span!("prune_events")) => r,
                    () = stop.cancelled() => return,
                };
                prune_more = pruned.as_ref().is_ok_and(|p| p.more);
                match pruned {
                    Ok(p) if p.deleted > 0 => {
                        tracing::info!(deleted = p.deleted, more = p.more, "pruned expired events");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        self.metrics.error(Stage::Relay);
                        tracing::warn!(error = %e, "cannot prune expired events");
                    }
                }
            }
            if failed {
                // New events wait with the rest; a reconnect, or streams created again, is worth
                // a try at once.
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                    () = self.failures.next_restore() => {}
                    changed = nats.changed() => if changed.is_err() { return },
                }
                continue;
            }
            backoff.reset();
            tokio::select! {
                () = stop.cancelled() => return,
                () = feed.events_written() => {}
                _ = poll.tick() => {}
                changed = nats.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Relays until the outbox is empty or a pass fails (tried again after the backoff).
    async fn drain(&self) -> Drained {
        loop {
            match self.relay_once().await {
                Ok(pass) if pass.more => continue,
                Ok(_) => return Drained::Empty,
                Err(e) => {
                    if let RelayError::Publish(p) = &e {
                        // The events stream may be gone, or unable to store.
                        self.failures.report(EVENTS_STREAM, p.store_failed());
                    }
                    self.metrics.error(Stage::Relay);
                    tracing::warn!(error = %e, "relaying events failed; retrying");
                    return Drained::Failed;
                }
            }
        }
    }
}

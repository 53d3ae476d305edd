//! The outbox writer: puts bench events into PostgreSQL with `pulse_emit_event`, as an
//! application does, on its own thread and runtime with its own connections, so reading frames
//! never delays an insert. The active poller relays the events to NATS; [`RelayWatch`] counts
//! what arrives there.
//!
//! Every event is `bench:tick` on one topic of the run's tenant, with the payload
//! `{"bench_sent_ns":<wall clock just before the insert>,"pad":"x…"}`. Inserts are paced
//! evenly (event i at i/rate seconds into the run), one per connection in flight, so a slow
//! insert does not hold back the ones behind it while a connection is free. The database gives
//! the `seq`: concurrent inserts of one topic take theirs in commit order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

use crate::latency::{Latency, Recorder};
use crate::population::now_ns;
use crate::scan::Scanner;

/// The `event` of every bench event.
pub const EVENT: &str = "bench:tick";

/// Highest `seq` [`RelayWatch`] keeps track of.
const MAX_SEQ: usize = 100_000_000;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    #[error("cannot create the run's tenant {0:?}: {1}")]
    Tenant(String, String),
    #[error("the outbox writer thread is gone")]
    Gone,
    #[error("cannot start the outbox writer thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// What one run of inserts did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Written {
    /// Events asked for per second.
    pub rate: f64,
    pub inserted: u64,
    pub failed: u64,
    /// Wall clock when the first insert was sent, nanoseconds since the Unix epoch.
    pub started_ns: u64,
    /// From the first insert sent to the last one answered, seconds.
    pub seconds: f64,
    /// The highest `seq` `pulse_emit_event` returned.
    pub last_seq: u64,
    /// Round trip of one `SELECT pulse_emit_event(...)`.
    pub insert_latency: Latency,
    /// The first failure, verbatim.
    pub error: Option<String>,
}

enum Request {
    Write {
        rate: f64,
        duration: Duration,
        done: oneshot::Sender<Written>,
    },
    Remove {
        done: oneshot::Sender<()>,
    },
}

/// Handle to the writer thread; dropping it ends the thread.
pub struct Outbox {
    requests: mpsc::Sender<Request>,
}

/// Where the events go.
#[derive(Clone)]
struct Target {
    pool: PgPool,
    tenant: Arc<str>,
    topic: Arc<str>,
    pad: Arc<str>,
    connections: usize,
}

impl Outbox {
    /// Starts the writer thread, opens `connections` connections to `database_url` and
    /// creates `tenant` there (events of a tenant the database does not know are refused).
    pub async fn start(
        database_url: &str,
        tenant: &str,
        topic: &str,
        payload_bytes: usize,
        connections: u32,
    ) -> Result<Outbox, OutboxError> {
        let url = database_url.to_owned();
        let (tenant, topic) = (Arc::<str>::from(tenant), Arc::<str>::from(topic));
        // The fixed part of an event frame is about 190 bytes; pad up to the size asked for.
        let pad = Arc::<str>::from("x".repeat(payload_bytes.saturating_sub(190)));
        let target = move || async move {
            Ok(Target {
                pool: open(&url, &tenant, connections).await?,
                tenant,
                topic,
                pad,
                connections: connections as usize,
            })
        };
        let requests =
            crate::start_worker("bench-outbox", target, serve, OutboxError::Gone).await?;
        Ok(Outbox { requests })
    }

    /// Writes events at `rate` per second for `duration`.
    pub async fn write(&self, rate: f64, duration: Duration) -> Result<Written, OutboxError> {
        let (done, result) = oneshot::channel();
        self.requests
            .send(Request::Write {
                rate,
                duration,
                done,
            })
            .await
            .map_err(|_| OutboxError::Gone)?;
        result.await.map_err(|_| OutboxError::Gone)
    }

    /// Deletes the run's tenant, and with it its events.
    pub async fn remove(&self) {
        let (done, result) = oneshot::channel();
        if self.requests.send(Request::Remove { done }).await.is_ok() {
            let _ = result.await;
        }
    }
}

async fn open(url: &str, tenant: &str, connections: u32) -> Result<PgPool, OutboxError> {
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|e| OutboxError::Connect(e.to_string()))?;
    sqlx::query(
        "INSERT INTO tenants (tenant_id, name) VALUES ($1, 'pulse-bench') \
         ON CONFLICT (tenant_id) DO NOTHING",
    )
    .bind(tenant)
    .execute(&pool)
    .await
    .map_err(|e| OutboxError::Tenant(tenant.to_owned(), e.to_string()))?;
    // Open every connection now, so the first inserts do not wait for a login.
    let mut held = Vec::new();
    for _ in 0..connections {
        match pool.acquire().await {
            Ok(c) => held.push(c),
            Err(e) => return Err(OutboxError::Connect(e.to_string())),
        }
    }
    drop(held);
    Ok(pool)
}

async fn serve(target: Target, mut requests: mpsc::Receiver<Request>) {
    while let Some(request) = requests.recv().await {
        match request {
            Request::Write {
                rate,
                duration,
                done,
            } => {
                let _ = done.send(write(&target, rate, duration).await);
            }
            Request::Remove { done } => {
                if let Err(e) = sqlx::query("DELETE FROM tenants WHERE tenant_id = $1")
                    .bind(&*target.tenant)
                    .execute(&target.pool)
                    .await
                {
                    tracing::debug!(error = %e, "cannot remove the bench tenant");
                }
                let _ = done.send(());
            }
        }
    }
    target.pool.close().await;
}

/// One insert: its `seq`, or why not.
async fn insert(target: &Target, recorder: &Recorder, n: u64) -> Result<u64, String> {
    let sent = now_ns();
    let payload = format!(r#"{{"bench_sent_ns":{sent},"pad":"{}"}}"#, target.pad);
    let began = Instant::now();
    let seq: i64 = sqlx::query_scalar("SELECT pulse_emit_event($1, $2, $3, $4::jsonb)")
        .bind(&*target.tenant)
        .bind(&*target.topic)
        .bind(EVENT)
        .bind(payload)
        .fetch_one(&target.pool)
        .await
        .map_err(|e| e.to_string())?;
    recorder.record(n, began.elapsed().as_micros() as u64);
    u64::try_from(seq).map_err(|_| format!("pulse_emit_event returned seq {seq}"))
}

async fn write(target: &Target, rate: f64, duration: Duration) -> Written {
    let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let recorder = Arc::new(Recorder::new());
    let permits = Arc::new(Semaphore::new(target.connections.max(1)));
    let mut out = Written {
        rate,
        started_ns: now_ns(),
        ..Default::default()
    };
    let start = Instant::now();
    let mut inflight = JoinSet::new();
    for n in 0..total {
        let at = start + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
        // With every connection busy the pace slips; the achieved rate shows it.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (target, recorder) = (target.clone(), recorder.clone());
        inflight.spawn(async move {
            let r = insert(&target, &recorder, n).await;
            drop(permit);
            r
        });
        while let Some(r) = inflight.try_join_next() {
            count(&mut out, r);
        }
    }
    while let Some(r) = inflight.join_next().await {
        count(&mut out, r);
    }
    out.seconds = start.elapsed().as_secs_f64();
    out.insert_latency = recorder.summary();
    out
}

fn count(out: &mut Written, r: Result<Result<u64, String>, tokio::task::JoinError>) {
    match r.map_err(|e| e.to_string()).and_then(|r| r) {
        Ok(seq) => {
            out.inserted += 1;
            out.last_seq = out.last_seq.max(seq);
        }
        Err(e) => {
            out.failed += 1;
            out.error.get_or_insert(e);
        }
    }
}

/// What reached NATS, as seen by [`RelayWatch`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Relayed {
    /// Distinct events (by `seq`) seen on the subject.
    pub relayed: u64,
    /// Wall clock when the last new one arrived, nanoseconds since the Unix epoch.
    pub last_ns: u64,
    /// Insert → message on NATS.
    pub latency: Latency,
}

#[derive(Default)]
struct Seen {
    seqs: Vec<bool>,
    relayed: u64,
    last_ns: u64,
}

/// Counts the events that reach NATS on one subject: every distinct `seq`, when it arrived
/// and how long after its insert.
pub struct RelayWatch {
    seen: Arc<Mutex<Seen>>,
    latency: Arc<Recorder>,
    task: tokio::task::JoinHandle<()>,
}

impl RelayWatch {
    /// Subscribes to `subject`; the subscription is in place at the server on return.
    pub async fn start(
        nats: &async_nats::Client,
        subject: String,
    ) -> Result<RelayWatch, async_nats::Error> {
        let mut subscriber = nats.subscribe(subject).await?;
        nats.flush().await?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let latency = Arc::new(Recorder::new());
        let task = {
            let (seen, latency) = (seen.clone(), latency.clone());
            tokio::spawn(async move {
                let scanner = Scanner::new();
                while let Some(message) = subscriber.next().await {
                    let now = now_ns();
                    let Ok(text) = std::str::from_utf8(&message.payload) else {
                        continue;
                    };
                    let Some(f) = scanner.scan(text) else {
                        continue;
                    };
                    // Seqs are the run's own, one per event written: far below this.
                    let i = f.seq as usize;
                    if i > MAX_SEQ {
                        continue;
                    }
                    let mut seen = seen.lock();
                    if seen.seqs.len() <= i {
                        seen.seqs.resize(i + 1, false);
                    }
                    if !seen.seqs[i] {
                        seen.seqs[i] = true;
                        seen.relayed += 1;
                        seen.last_ns = now;
                        latency.record(f.seq, now.saturating_sub(f.sent_ns) / 1000);
                    }
                }
            })
        };
        Ok(RelayWatch {
            seen,
            latency,
            task,
        })
    }

    /// Distinct events seen so far.
    pub fn relayed(&self) -> u64 {
        self.seen.lock().relayed
    }

    pub fn summary(&self) -> Relayed {
        let seen = self.seen.lock();
        Relayed {
            relayed: seen.relayed,
            last_ns: seen.last_ns,
            latency: self.latency.summary(),
        }
    }
}

impl Drop for RelayWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

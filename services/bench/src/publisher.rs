//! The publisher: sends bench messages straight to NATS, as the poller would, on its own thread
//! and runtime with its own NATS connection, so receiving frames never delays a publish.
//!
//! Every message has the shape of its subject's contract message plus `bench_stage` and
//! `bench_sent_ns`, and (for a gateway, which orders by it) the `Pulse-Seq` header increasing
//! per subject from 1. Messages are paced evenly: at rate r, message i goes out at i/r seconds
//! into the stage, and `bench_sent_ns` is that time on the publisher's wall clock
//! (nanoseconds since the Unix epoch), not when it actually went out: a publisher that fell
//! behind (short of CPU) adds its delay to the latency measured, rather than hiding it
//! (coordinated omission).

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::BenchError;
use crate::population::now_ns;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{mpsc, oneshot};

/// What is published.
#[derive(Debug, Clone)]
pub enum Shape {
    /// `pulse.v1.<tenant>.alerts`, alerts messages.
    Alerts { tenant: String },
    /// `pulse.v1.<tenant>.device.dev-<i>.telemetry` for i in 0..devices, in turn.
    Telemetry { tenant: String, devices: usize },
}

impl Shape {
    pub fn subjects(&self) -> Vec<String> {
        match self {
            Shape::Alerts { tenant } => vec![format!("pulse.v1.{tenant}.alerts")],
            Shape::Telemetry { tenant, devices } => (0..*devices)
                .map(|d| format!("pulse.v1.{tenant}.device.dev-{d}.telemetry"))
                .collect(),
        }
    }
}

/// What one stage published.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct StageResult {
    pub stage: u32,
    /// Messages asked for per second (all subjects together).
    pub rate: f64,
    /// Messages published per subject in this stage.
    pub published: Vec<u64>,
    /// Wall time from the first to the last publish, seconds.
    pub seconds: f64,
}

impl StageResult {
    pub fn total(&self) -> u64 {
        self.published.iter().sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot connect the publisher to NATS: {0}")]
    Connect(String),
    #[error("publish failed: {0}")]
    Publish(String),
    #[error("the publisher thread is gone")]
    Gone,
    #[error("cannot start the publisher thread: {0}")]
    Thread(#[from] std::io::Error),
}

struct Request {
    stage: u32,
    rate: f64,
    duration: Duration,
    done: oneshot::Sender<Result<StageResult, PublishError>>,
}

/// Handle to the publisher thread; dropping it ends the thread.
pub struct Publisher {
    requests: mpsc::Sender<Request>,
}

/// Builds message bodies of about `payload_bytes`.
struct Composer {
    shape: Shape,
    pad: String,
    /// Whether messages carry the `Pulse-Seq` header: a gateway orders by it; the peers read
    /// `seq` from the body, and a nats-server would send them every header block too.
    seq_header: bool,
}

impl Composer {
    fn new(shape: Shape, payload_bytes: usize, seq_header: bool) -> Self {
        // The fixed part of either message is about 260 bytes; pad up to the size asked for.
        let pad = "x".repeat(payload_bytes.saturating_sub(260));
        Self {
            shape,
            pad,
            seq_header,
        }
    }

    fn compose(&self, subject: usize, seq: u64, stage: u32, sent: u64) -> Bytes {
        let ts = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        let pad = &self.pad;
        let text = match &self.shape {
            Shape::Alerts { tenant } => format!(
                r#"{{"type":"alerts","tenant_id":"{tenant}","seq":{seq},"bench_stage":{stage},"bench_sent_ns":{sent},"ts":"{ts}","alerts":[{{"alert_id":{seq},"device_id":"dev-1","site_id":"site-1","alert_type":"temperature_high","severity":3,"summary":"bench alert{pad}","status":"OPEN","created_at":"{ts}"}}],"total_open":1}}"#
            ),
            Shape::Telemetry { tenant, .. } => format!(
                r#"{{"type":"telemetry","tenant_id":"{tenant}","device_id":"dev-{subject}","seq":{seq},"bench_stage":{stage},"bench_sent_ns":{sent},"data":{{"timestamp":"{ts}","metrics":{{"temperature_c":21.5,"humidity_pct":40.25,"battery_pct":87,"note":"bench reading{pad}"}}}}}}"#
            ),
        };
        Bytes::from(text)
    }
}

impl Publisher {
    /// Starts the publisher thread and connects it to NATS; `seq_header`: with the
    /// `Pulse-Seq` header (see [`Composer`]).
    pub async fn start(
        nats: &pulse_common::nats::NatsArgs,
        shape: Shape,
        payload_bytes: usize,
        seq_header: bool,
    ) -> Result<Publisher, PublishError> {
        let nats = nats.clone();
        let publish = move |client, rx| serve(client, shape, payload_bytes, seq_header, rx);
        let requests = crate::start_worker(
            "bench-publisher",
            || connect(nats),
            publish,
            PublishError::Gone,
        )
        .await?;
        Ok(Publisher { requests })
    }

    /// Publishes stage `stage` at `rate` messages per second for `duration`.
    pub async fn stage(
        &self,
        stage: u32,
        rate: f64,
        duration: Duration,
    ) -> Result<StageResult, PublishError> {
        let (done, result) = oneshot::channel();
        self.requests
            .send(Request {
                stage,
                rate,
                duration,
                done,
            })
            .await
            .map_err(|_| PublishError::Gone)?;
        result.await.map_err(|_| PublishError::Gone)?
    }
}

async fn connect(nats: pulse_common::nats::NatsArgs) -> Result<async_nats::Client, PublishError> {
    pulse_common::nats::connect_once(&nats, "pulse-bench-publisher")
        .await
        .map_err(|e| PublishError::Connect(format!("{e:#}")))
}

async fn serve(
    client: async_nats::Client,
    shape: Shape,
    payload_bytes: usize,
    seq_header: bool,
    mut requests: mpsc::Receiver<Request>,
) {
    let subjects = shape.subjects();
    let composer = Composer::new(shape, payload_bytes, seq_header);
    let mut seqs = vec![0u64; subjects.len()];
    while let Some(request) = requests.recv().await {
        let result = run_stage(&client, &subjects, &composer, &mut seqs, &request).await;
        let _ = request.done.send(result);
    }
}

async fn run_stage(
    client: &async_nats::Client,
    subjects: &[String],
    composer: &Composer,
    seqs: &mut [u64],
    request: &Request,
) -> Result<StageResult, PublishError> {
    let rate = request.rate;
    let total = (rate * request.duration.as_secs_f64()).round().max(1.0) as u64;
    let mut published = vec![0u64; subjects.len()];
    let start = Instant::now();
    let start_ns = now_ns();
    let mut sent = 0u64;
    while sent < total {
        let due = ((start.elapsed().as_secs_f64() * rate) as u64 + 1).min(total);
        while sent < due {
            let subject = (sent % subjects.len() as u64) as usize;
            seqs[subject] += 1;
            let seq = seqs[subject];
            let scheduled = start_ns + (sent as f64 * 1e9 / rate) as u64;
            let body = composer.compose(subject, seq, request.stage, scheduled);
            let outcome = if composer.seq_header {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(pulse_proto::headers::SEQ, seq.to_string().as_str());
                client
                    .publish_with_headers(subjects[subject].clone(), headers, body)
                    .await
            } else {
                client.publish(subjects[subject].clone(), body).await
            };
            outcome.map_err(|e| PublishError::Publish(e.to_string()))?;
            published[subject] += 1;
            sent += 1;
        }
        if sent < total {
            let next = start + Duration::from_secs_f64(sent as f64 / rate);
            tokio::time::sleep_until(next.into()).await;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    client
        .flush()
        .await
        .map_err(|e| PublishError::Publish(e.to_string()))?;
    Ok(StageResult {
        stage: request.stage,
        rate,
        published,
        seconds,
    })
}

/// Lists devices `dev-0` … `dev-<devices - 1>` of `tenant` in the device registry, as the
/// poller does for the devices in its database: gateways subscribe clients only to devices
/// listed there, and the bench publishes telemetry for devices no database holds.
pub async fn register_devices(
    nats: &async_nats::Client,
    tenant: &str,
    devices: usize,
) -> Result<(), BenchError> {
    use futures::StreamExt as _;
    let js = async_nats::jetstream::new(nats.clone());
    let store = pulse_common::device_bucket::ensure(&js, 1)
        .await
        .map_err(|e| BenchError::Nats(format!("cannot open the device registry: {e}")))?;
    let store = &store;
    let failed = futures::stream::iter(0..devices)
        .map(|n| async move {
            store
                .put(format!("{tenant}.dev-{n}"), bytes::Bytes::new())
                .await
                .err()
        })
        .buffer_unordered(64)
        .filter_map(std::future::ready)
        .next()
        .await;
    match failed {
        None => Ok(()),
        Some(e) => Err(BenchError::Nats(format!(
            "cannot list a device in the registry: {e}"
        ))),
    }
}

/// Removes what a run left under `pulse.v1.<tenant>.>` in the `PULSE_STATE` and
/// `PULSE_EVENTS` streams and its devices in the device registry, where they exist.
pub async fn purge_state(nats: &async_nats::Client, tenant: &str) {
    let js = async_nats::jetstream::new(nats.clone());
    if let Ok(stream) = js
        .get_stream(format!("KV_{}", pulse_proto::subject::DEVICES_BUCKET))
        .await
        && let Err(e) = stream
            .purge()
            .filter(format!(
                "$KV.{}.{tenant}.>",
                pulse_proto::subject::DEVICES_BUCKET
            ))
            .await
    {
        tracing::debug!(error = %e, tenant, "cannot purge the bench devices");
    }
    for name in [
        pulse_proto::subject::STATE_STREAM,
        pulse_proto::subject::EVENTS_STREAM,
    ] {
        let Ok(stream) = js.get_stream(name).await else {
            continue;
        };
        if let Err(e) = stream.purge().filter(format!("pulse.v1.{tenant}.>")).await {
            tracing::debug!(error = %e, tenant, stream = name, "cannot purge the bench subjects");
        }
    }
}

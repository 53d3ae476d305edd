//! A population of long-lived bench clients: ramped up at a given rate with a bounded number of
//! setups in flight, each then reading frames until told to stop (and, in a storm, cut and
//! reconnected at once; on an events topic, resumed on another gateway from the last `seq` it
//! saw when its own goes away). Counting is shared: atomics per stage for deliveries, sharded
//! histograms for latency, so one client costs a task, a socket and a few words.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::client::{self, ClientError, Target, Ws};
use crate::config::Protocol;
use crate::errors::Errors;
use crate::latency::{Counter, Recorder};
use crate::scan::Scanner;

mod recover;
use recover::{reconnect, resume};

/// Wall clock in nanoseconds since the Unix epoch; comparable across processes on one host.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

/// Counts shared by every client of the process.
pub struct Shared {
    pub scanner: Scanner,
    /// Per stage: publish → frame latency.
    pub latency: Vec<Recorder>,
    /// Per stage: distinct messages received.
    pub received: Vec<Counter>,
    /// Per stage: messages received again (or older than one already received).
    pub duplicated: Vec<Counter>,
    /// Bench frames for a subject the client does not hold (should stay 0).
    pub stray: AtomicU64,
    /// Setup (connect → subscribe ack) latency.
    pub setup: Recorder,
    pub established: AtomicU64,
    pub failed: AtomicU64,
    /// Clients connected right now.
    pub alive: AtomicU64,
    /// Nanoseconds after the ramp started at which the last setup completed.
    pub last_setup_ns: AtomicU64,
    /// Storm: cut → subscribe ack again.
    pub reconnect: Recorder,
    pub reconnected: AtomicU64,
    pub reconnect_failed: AtomicU64,
    pub last_reconnect_ns: AtomicU64,
    /// Events: connections lost (and so resumed, or given up on).
    pub lost: AtomicU64,
    /// Events: the part of `lost` the gateway closed with 1012 (service restart): drained.
    pub lost_drained: AtomicU64,
    pub resumed: AtomicU64,
    pub resume_failed: AtomicU64,
    /// Events: `events_reset` messages received.
    pub resets: AtomicU64,
    /// Events: publish → frame for the events a resumed client was sent for the time it was
    /// away (published before its new `subscribed` reply).
    pub caught_up: Recorder,
    /// Events: every resumption, once its client is done.
    pub resumptions: Mutex<Vec<Resumption>>,
    pub errors: Errors,
}

impl Shared {
    pub fn new(stages: usize) -> Self {
        Self {
            scanner: Scanner::new(),
            latency: (0..stages).map(|_| Recorder::new()).collect(),
            received: (0..stages).map(|_| Counter::default()).collect(),
            duplicated: (0..stages).map(|_| Counter::default()).collect(),
            stray: AtomicU64::new(0),
            setup: Recorder::new(),
            established: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            alive: AtomicU64::new(0),
            last_setup_ns: AtomicU64::new(0),
            reconnect: Recorder::new(),
            reconnected: AtomicU64::new(0),
            reconnect_failed: AtomicU64::new(0),
            last_reconnect_ns: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            lost_drained: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            resume_failed: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            caught_up: Recorder::new(),
            resumptions: Mutex::new(Vec::new()),
            errors: Errors::default(),
        }
    }
}

/// Who a client is and what it holds.
#[derive(Debug, Clone)]
pub struct ClientPlan {
    /// Global index in the run (all shards): picks the source address.
    pub index: u64,
    pub target: Arc<Target>,
    pub token: Arc<str>,
    /// Device numbers it subscribes to; empty: the tenant's alerts.
    pub devices: Vec<u32>,
    /// An events topic it subscribes to instead.
    pub topic: Option<Arc<str>>,
}

impl ClientPlan {
    /// Speaking NATS: the subjects its subscriptions are, of `tenant`.
    fn subjects(&self, tenant: &str) -> Vec<String> {
        if self.devices.is_empty() {
            vec![format!("pulse.v1.{tenant}.alerts")]
        } else {
            self.devices
                .iter()
                .map(|d| format!("pulse.v1.{tenant}.device.dev-{d}.telemetry"))
                .collect()
        }
    }

    fn requests(&self) -> Vec<String> {
        if let Some(topic) = &self.topic {
            vec![client::subscribe_events(topic, None)]
        } else if self.devices.is_empty() {
            vec![client::subscribe_alerts()]
        } else {
            self.devices
                .iter()
                .map(|d| client::subscribe_device(*d))
                .collect()
        }
    }
}

/// How a client ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub devices: Vec<u32>,
    pub connected: bool,
    /// Still connected when told to stop.
    pub held: bool,
    /// Events: the topic's `seq` in the first `subscribed` reply; every later event is expected.
    pub base: u64,
    /// The newest `seq` the client had of each subject it held when it ended, in the order of
    /// `devices` (one for the alerts or an events topic; there, its `base` if it got none).
    pub newest: Vec<u64>,
}

/// One client's return after losing its gateway: wall clock, nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resumption {
    /// The connection ended.
    pub lost_ns: u64,
    /// The gateway it was on: its place in the failover list (`--gateway`).
    pub gateway: usize,
    /// The gateway closed it with 1012 (service restart): it was draining.
    pub drained: bool,
    /// The `subscribed` reply (with `since`) from another gateway.
    pub subscribed_ns: Option<u64>,
    /// The first event after the loss.
    pub first_event_ns: Option<u64>,
}

/// Per-client receive state: the newest `seq` seen per subscribed subject.
struct Tally {
    devices: Vec<u32>,
    last: Vec<u64>,
    /// Events published before this wall clock (ns) are ones the client missed while away.
    away_until: u64,
    resuming: Option<Resumption>,
    resumptions: Vec<Resumption>,
}

impl Tally {
    fn new(devices: &[u32]) -> Self {
        Self {
            devices: devices.to_vec(),
            last: vec![0; devices.len().max(1)],
            away_until: 0,
            resuming: None,
            resumptions: Vec::new(),
        }
    }

    /// The connection to gateway `gateway` ended (`drained`: with 1012): what arrives until
    /// the next `subscribed` reply was missed.
    fn lost(&mut self, gateway: usize, drained: bool) {
        self.resumptions.extend(self.resuming.take());
        self.away_until = u64::MAX;
        self.resuming = Some(Resumption {
            lost_ns: now_ns(),
            gateway,
            drained,
            subscribed_ns: None,
            first_event_ns: None,
        });
    }

    fn resubscribed(&mut self) {
        let now = now_ns();
        self.away_until = now;
        if let Some(r) = &mut self.resuming {
            r.subscribed_ns = Some(now);
        }
    }

    /// Hands the client's resumptions to `shared`.
    fn flush(&mut self, shared: &Shared) {
        self.resumptions.extend(self.resuming.take());
        if !self.resumptions.is_empty() {
            shared.resumptions.lock().append(&mut self.resumptions);
        }
    }

    fn on_text(&mut self, shared: &Shared, who: u64, text: &str) {
        let Some(f) = shared.scanner.scan(text) else {
            if text.starts_with(r#"{"type":"events_reset""#) {
                shared.resets.fetch_add(1, Ordering::Relaxed);
            }
            return;
        };
        let slot = if self.devices.is_empty() {
            0
        } else {
            match self.devices.iter().position(|d| *d == f.device) {
                Some(i) => i,
                None => {
                    shared.stray.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        };
        let stage = f.stage as usize;
        let (Some(received), Some(duplicated), Some(latency)) = (
            shared.received.get(stage),
            shared.duplicated.get(stage),
            shared.latency.get(stage),
        ) else {
            shared.stray.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if f.seq <= self.last[slot] {
            duplicated.add(who, 1);
            return;
        }
        self.last[slot] = f.seq;
        received.add(who, 1);
        let now = now_ns();
        let us = now.saturating_sub(f.sent_ns) / 1000;
        latency.record(who, us);
        if f.sent_ns < self.away_until {
            shared.caught_up.record(who, us);
        }
        if let Some(r) = &mut self.resuming {
            r.first_event_ns.get_or_insert(now);
        }
    }
}

/// Connection knobs the clients share.
#[derive(Debug, Clone)]
pub struct Dial {
    pub spread_sources: bool,
    pub read_buffer_bytes: usize,
    pub connect_timeout: Duration,
    /// What the clients speak, and (speaking NATS, with no token to name it) their tenant.
    pub protocol: Protocol,
    pub tenant: Arc<str>,
    /// Events: the gateways a client that loses its own resumes on, tried in turn from the
    /// one after its own. Empty: a lost connection ends the client.
    pub failover: Vec<Arc<Target>>,
}

/// Connects and subscribes one client, within the timeout. Returns the socket and the `seq`
/// of its `subscribed` reply, if it has one.
pub async fn establish(
    plan: &ClientPlan,
    dial: &Dial,
    on_data: impl FnMut(&str),
) -> Result<(Ws, Option<u64>), ClientError> {
    establish_with(plan, dial, &plan.requests(), on_data).await
}

/// [`establish`] with these subscribe requests.
async fn establish_with(
    plan: &ClientPlan,
    dial: &Dial,
    requests: &[String],
    mut on_data: impl FnMut(&str),
) -> Result<(Ws, Option<u64>), ClientError> {
    let setup = async {
        let mut ws = client::connect(
            &plan.target,
            &plan.token,
            plan.index,
            dial.spread_sources,
            dial.read_buffer_bytes,
            dial.protocol,
        )
        .await?;
        let seq = match dial.protocol {
            Protocol::Pulse => client::subscribe(&mut ws, requests, &mut on_data).await?,
            Protocol::Nats => {
                let subjects = plan.subjects(&dial.tenant);
                client::subscribe_nats(&mut ws, &subjects, &mut on_data).await?;
                None
            }
        };
        Ok::<_, ClientError>((ws, seq))
    };
    tokio::time::timeout(dial.connect_timeout, setup)
        .await
        .map_err(|_| ClientError::Timeout)?
}

/// Signals for a running population.
#[derive(Clone, Default)]
pub struct Control {
    /// Stop reading and drop the connection.
    pub stop: CancellationToken,
    /// Storm: drop the connection and reconnect at once.
    pub cut: CancellationToken,
    /// When the cut happened.
    pub cut_at: Arc<Mutex<Option<Instant>>>,
}

/// A ramped-up population of clients.
pub struct Population {
    pub shared: Arc<Shared>,
    pub control: Control,
    spawner: tokio::task::JoinHandle<Vec<Outcome>>,
    pub started: Instant,
    pub planned: u64,
}

impl Population {
    /// Starts `plans` at `rate` per second (0: as fast as `concurrency` allows). Returns at
    /// once; see [`Population::settled`].
    pub fn ramp(
        plans: Vec<ClientPlan>,
        rate: f64,
        concurrency: usize,
        dial: Dial,
        shared: Arc<Shared>,
    ) -> Population {
        let control = Control::default();
        let started = Instant::now();
        let planned = plans.len() as u64;
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        // The spawner paces launches, then collects every client's outcome.
        let spawner = {
            let shared = shared.clone();
            let control = control.clone();
            tokio::spawn(async move {
                let mut clients = JoinSet::new();
                for (sent, plan) in plans.into_iter().enumerate() {
                    if rate > 0.0 {
                        let at = started + Duration::from_secs_f64(sent as f64 / rate);
                        tokio::time::sleep_until(at.into()).await;
                    }
                    let permit = tokio::select! {
                        permit = permits.clone().acquire_owned() => match permit {
                            Ok(p) => p,
                            Err(_) => break,
                        },
                        () = control.stop.cancelled() => break,
                    };
                    clients.spawn(run_client(
                        plan,
                        dial.clone(),
                        shared.clone(),
                        control.clone(),
                        started,
                        permit,
                    ));
                }
                let mut outcomes = Vec::with_capacity(clients.len());
                while let Some(done) = clients.join_next().await {
                    if let Ok(o) = done {
                        outcomes.push(o);
                    }
                }
                outcomes
            })
        };
        Population {
            shared,
            control,
            spawner,
            started,
            planned,
        }
    }

    /// Waits until every client has either connected or failed (or `within` passed).
    pub async fn settled(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let done = self.shared.established.load(Ordering::Relaxed)
                + self.shared.failed.load(Ordering::Relaxed);
            if done >= self.planned {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Seconds from the start of the ramp to the last subscribe ack.
    pub fn setup_seconds(&self) -> f64 {
        self.shared.last_setup_ns.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// Cuts every connection at once; each client reconnects immediately.
    pub fn storm(&self) {
        *self.control.cut_at.lock() = Some(Instant::now());
        self.control.cut.cancel();
    }

    /// Waits until every client that was connected has reconnected or given up.
    pub async fn reconnected(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let expected = self.shared.established.load(Ordering::Relaxed);
        while Instant::now() < deadline {
            let done = self.shared.reconnected.load(Ordering::Relaxed)
                + self.shared.reconnect_failed.load(Ordering::Relaxed);
            if done >= expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops every client and returns how each ended.
    pub async fn finish(self) -> Vec<Outcome> {
        self.control.stop.cancel();
        self.spawner.await.unwrap_or_default()
    }
}

/// One client's life: set up, read until stopped; in a storm, cut and set up again; on an
/// events topic, resume elsewhere when the gateway goes away.
async fn run_client(
    mut plan: ClientPlan,
    dial: Dial,
    shared: Arc<Shared>,
    control: Control,
    started: Instant,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Outcome {
    let mut tally = Tally::new(&plan.devices);
    let who = plan.index;
    let mut outcome = Outcome {
        devices: plan.devices.clone(),
        connected: false,
        held: false,
        base: 0,
        newest: Vec::new(),
    };
    let begin = Instant::now();
    let setup = tokio::select! {
        r = establish(&plan, &dial, |t| tally.on_text(&shared, who, t)) => r,
        () = control.stop.cancelled() => return outcome,
    };
    drop(permit);
    let mut ws = match setup {
        Ok((ws, seq)) => {
            // Events: the ack's seq is the newest event already published; later ones count.
            if let Some(seq) = seq.filter(|_| plan.topic.is_some()) {
                outcome.base = seq;
                tally.last[0] = tally.last[0].max(seq);
            }
            ws
        }
        Err(e) => {
            shared.errors.record(&e);
            shared.failed.fetch_add(1, Ordering::Relaxed);
            return outcome;
        }
    };
    shared.setup.record(who, begin.elapsed().as_micros() as u64);
    shared
        .last_setup_ns
        .fetch_max(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    shared.established.fetch_add(1, Ordering::Relaxed);
    shared.alive.fetch_add(1, Ordering::Relaxed);
    outcome.connected = true;
    let mut stormed = false;
    // Made once: a fresh `cancelled()` per frame would register with the token, which every
    // client shares, on every frame.
    let stop = control.stop.clone().cancelled_owned();
    let cut = control.cut.clone().cancelled_owned();
    tokio::pin!(stop, cut);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => {
                outcome.held = true;
                break;
            }
            () = &mut cut, if !stormed => {
                stormed = true;
                drop(ws);
                let cut_at = control.cut_at.lock().unwrap_or_else(Instant::now);
                match reconnect(&plan, &dial, &control, &mut tally, &shared, cut_at).await {
                    Some(again) => ws = again,
                    None => {
                        shared.alive.fetch_sub(1, Ordering::Relaxed);
                        outcome.newest = tally.last;
                        return outcome;
                    }
                }
            }
            frame = client::next_text(&mut ws) => match frame {
                Ok(text) => tally.on_text(&shared, who, &text),
                // Events: the gateway went away; counted as `lost_<kind>`.
                Err(e) if plan.topic.is_some() && !dial.failover.is_empty() => {
                    shared.errors.record_as(&e, "lost_");
                    drop(ws);
                    let drained = e.close_code() == Some(pulse_proto::close::SERVICE_RESTART);
                    match resume(&mut plan, &dial, &control, &mut tally, &shared, drained).await {
                        Some(again) => ws = again,
                        None => {
                            tally.flush(&shared);
                            shared.alive.fetch_sub(1, Ordering::Relaxed);
                            outcome.newest = tally.last;
                            return outcome;
                        }
                    }
                }
                Err(e) => {
                    shared.errors.record(&e);
                    shared.alive.fetch_sub(1, Ordering::Relaxed);
                    outcome.newest = tally.last;
                    return outcome;
                }
            },
        }
    }
    tally.flush(&shared);
    shared.alive.fetch_sub(1, Ordering::Relaxed);
    outcome.newest = tally.last;
    // Dropping the socket is enough: the gateway sees the end of the stream.
    drop(ws);
    outcome
}

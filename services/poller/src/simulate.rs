//! Demo data for `pulse-poller simulate`: demo tenants, users and devices, then a steady stream
//! of telemetry readings and alert changes, so dashboards have something live to show.
//!
//! [`seed`] creates what is missing and changes nothing that exists. [`run`] seeds, then every
//! interval writes one reading per reporting device in a single insert, moves a few alerts
//! along, and every 30 s writes the batteries that changed. About 3% of devices are flaky and go
//! quiet for minutes at a time, so STALE and OFFLINE devices show up. An alert about a device
//! also moves that device's readings (a low-battery alert drains its battery, an offline alert
//! silences it), so alerts and telemetry tell the same story.
//!
//! It is for demos and local development only: every demo user shares one password.
//!
//! It must never:
//! - write `devices.last_seen_at`: the telemetry trigger keeps it equal to the newest reading;
//! - touch a tenant it was not given, or delete anything;
//! - rehash or reset the password of a user that already exists;
//! - exit on a database error once running: a failed step is logged and retried with backoff.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::{Pin, pin};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use argon2::Argon2;
use argon2::password_hash::{PasswordHasher as _, SaltString};
use pulse_common::backoff::Backoff;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::time::Instant;

/// What to simulate and how fast.
#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Comma-separated demo tenant ids.
    #[arg(
        long,
        env = "PULSE_SIM_TENANTS",
        default_value = "acme,globex",
        value_delimiter = ','
    )]
    pub tenants: Vec<String>,

    /// Devices per tenant.
    #[arg(long, env = "PULSE_SIM_DEVICES", default_value_t = 300)]
    pub devices: u32,

    /// Sites per tenant; devices are spread over them round-robin.
    #[arg(long, env = "PULSE_SIM_SITES", default_value_t = 6)]
    pub sites: u32,

    /// Milliseconds between two telemetry writes.
    #[arg(long, env = "PULSE_SIM_INTERVAL_MS", default_value_t = 1000)]
    pub interval_ms: u64,

    /// Password of every demo user (used only when a user is created).
    #[arg(
        long,
        env = "PULSE_DEMO_PASSWORD",
        default_value = DEFAULT_PASSWORD,
        hide_env_values = true
    )]
    pub password: String,

    /// Create the demo tenants, users and devices, then exit.
    #[arg(long)]
    pub seed_only: bool,
}

/// A demo user that can sign in, with the password of [`SimulateArgs::password`] (unless the
/// user existed before with another one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoLogin {
    pub tenant_id: String,
    pub email: String,
    pub role: &'static str,
}

const DEFAULT_PASSWORD: &str = "pulse-demo";
const MAX_DEVICES: u32 = 100_000;
const MAX_SITES: u32 = 1_000;
const INTERVAL_MS: RangeInclusive<u64> = 50..=60_000;

/// Share of devices that go quiet now and then.
const FLAKY_SHARE: f64 = 0.03;
/// How long a flaky device stays quiet: always past STALE (60 s), sometimes past OFFLINE (600 s).
const OUTAGE: RangeInclusive<Duration> = Duration::from_secs(60)..=Duration::from_secs(15 * 60);
/// How long a flaky device reports between two outages.
const UPTIME: RangeInclusive<Duration> = Duration::from_secs(60)..=Duration::from_secs(10 * 60);
/// How long a device silenced by an offline alert stays quiet: long enough to turn OFFLINE.
const FORCED_OUTAGE: RangeInclusive<Duration> =
    Duration::from_secs(11 * 60)..=Duration::from_secs(15 * 60);
/// A device quiet for this long may be named by an offline alert as it is.
const QUIET_ENOUGH_FOR_ALERT: Duration = Duration::from_secs(60);

/// Changed batteries are written this often, not every tick: each write notifies the fleet.
const BATTERY_WRITE_EVERY: Duration = Duration::from_secs(30);
/// A battery is written once it moved this many points from the stored value.
const BATTERY_WRITE_DELTA: f64 = 1.0;
/// A battery at or below this is replaced by a full one.
const BATTERY_REPLACED_AT: f64 = 5.0;
/// Battery drain, in points per second of simulated time.
const BATTERY_DRAIN_PER_SECOND: f64 = 0.0005;

/// Below this many open alerts, a tenant's alerts change faster, so a fresh demo fills up.
const OPEN_LOW: i64 = 10;
/// The open alerts per tenant that inserts, acknowledgements and closes balance at; the count
/// hovers around it, mostly between 10 and 20.
const OPEN_TARGET: i64 = 15;
/// Mean time between two alert changes of one tenant.
const ALERT_CHANGE_EVERY: Duration = Duration::from_millis(7_500);

const REPORT_EVERY: Duration = Duration::from_secs(60);
const RETRY_BASE: Duration = Duration::from_millis(500);
const RETRY_CAP: Duration = Duration::from_secs(10);
/// Rows per statement when seeding devices, to keep each message to the server small.
const SEED_CHUNK: usize = 10_000;

impl SimulateArgs {
    /// Checks every value; the error names the variable to fix.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.tenants.is_empty() {
            bail!("PULSE_SIM_TENANTS is empty; give at least one tenant id");
        }
        let mut seen = HashSet::new();
        for tenant in &self.tenants {
            pulse_proto::validate_id(tenant).map_err(|e| {
                anyhow!("PULSE_SIM_TENANTS: {tenant:?} is not a valid tenant id: {e}")
            })?;
            // E-mail domains are derived from tenant ids, and e-mails are lower case.
            if !seen.insert(tenant.to_ascii_lowercase()) {
                bail!(
                    "PULSE_SIM_TENANTS lists {tenant:?} twice (tenant ids are compared ignoring case)"
                );
            }
        }
        in_range(
            "PULSE_SIM_DEVICES",
            self.devices.into(),
            1..=MAX_DEVICES.into(),
        )?;
        in_range("PULSE_SIM_SITES", self.sites.into(), 1..=MAX_SITES.into())?;
        if self.sites > self.devices {
            bail!(
                "PULSE_SIM_SITES ({}) must not exceed PULSE_SIM_DEVICES ({})",
                self.sites,
                self.devices
            );
        }
        in_range("PULSE_SIM_INTERVAL_MS", self.interval_ms, INTERVAL_MS)?;
        if self.password.is_empty() {
            bail!("PULSE_DEMO_PASSWORD is empty");
        }
        Ok(())
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
}

fn in_range(name: &str, value: u64, range: RangeInclusive<u64>) -> anyhow::Result<()> {
    if range.contains(&value) {
        Ok(())
    } else {
        bail!(
            "{name} must be between {} and {}, got {value}",
            range.start(),
            range.end()
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Names.
// ---------------------------------------------------------------------------------------------

/// `prefix-NNNN`: `n` zero-padded to `min_width` digits, or to the digits of `count` if more.
fn numbered(prefix: &str, n: u32, count: u32, min_width: usize) -> String {
    let width = count.to_string().len().max(min_width);
    format!("{prefix}-{n:0width$}")
}

/// The id of device `n` (1-based) of `count`: `dev-0001`.
fn device_id(n: u32, count: u32) -> String {
    numbered("dev", n, count, 4)
}

/// The id of site `n` (1-based) of `count`: `site-01`.
fn site_id(n: u32, count: u32) -> String {
    numbered("site", n, count, 2)
}

/// The 1-based site of the device at 0-based `index`: round-robin over `sites`.
fn site_of(index: u32, sites: u32) -> u32 {
    index % sites.max(1) + 1
}

/// `acme` becomes "Acme Operations".
fn tenant_name(tenant_id: &str) -> String {
    let mut chars = tenant_id.chars();
    let capitalised: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    format!("{capitalised} Operations")
}

/// The two users of each tenant, admin first.
fn planned_logins(tenants: &[String]) -> Vec<DemoLogin> {
    tenants
        .iter()
        .flat_map(|tenant| {
            let domain = tenant.to_ascii_lowercase();
            [("admin", "customer_admin"), ("viewer", "customer_viewer")].map(|(user, role)| {
                DemoLogin {
                    tenant_id: tenant.clone(),
                    email: format!("{user}@{domain}.example"),
                    role,
                }
            })
        })
        .collect()
}

/// `(device_id, site_id)` of every device of one tenant, in order.
fn planned_devices(devices: u32, sites: u32) -> impl Iterator<Item = (String, String)> {
    (0..devices).map(move |i| (device_id(i + 1, devices), site_id(site_of(i, sites), sites)))
}

/// An argon2id PHC string of `password` with a fresh random salt.
fn hash_password(password: &str, rng: &mut impl Rng) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rng.fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow!("cannot encode a salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| anyhow!("cannot hash the demo password: {e}"))
}

/// The logins as a small aligned table, for people starting the demo.
fn login_table(logins: &[DemoLogin], password: &str) -> String {
    let password = if password == DEFAULT_PASSWORD {
        format!("password {password:?}")
    } else {
        "password from PULSE_DEMO_PASSWORD".to_owned()
    };
    let tenant_w = logins
        .iter()
        .map(|l| l.tenant_id.len())
        .chain([6])
        .max()
        .unwrap_or(6);
    let email_w = logins
        .iter()
        .map(|l| l.email.len())
        .chain([5])
        .max()
        .unwrap_or(5);
    let mut out = format!("Demo logins ({password}; users created earlier keep their password):\n");
    out.push_str(&format!(
        "  {:tenant_w$}  {:email_w$}  ROLE\n",
        "TENANT", "EMAIL"
    ));
    for l in logins {
        out.push_str(&format!(
            "  {:tenant_w$}  {:email_w$}  {}\n",
            l.tenant_id, l.email, l.role
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Random behaviour, kept free of I/O.
// ---------------------------------------------------------------------------------------------

/// A value that moves by up to `step` each move, is pulled back toward `home` by `pull` (the
/// share of the gap closed per move, 0 for none), and never leaves `min..=max`.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomWalk {
    pub value: f64,
    pub min: f64,
    pub max: f64,
    pub step: f64,
    pub home: f64,
    pub pull: f64,
}

impl RandomWalk {
    /// A walk starting at `value` (clamped into the range) with no pull.
    pub fn new(value: f64, min: f64, max: f64, step: f64) -> Self {
        let (min, max) = if min <= max { (min, max) } else { (max, min) };
        let value = value.clamp(min, max);
        Self {
            value,
            min,
            max,
            step: step.abs(),
            home: value,
            pull: 0.0,
        }
    }

    /// The same walk, pulled toward `home` by `pull` per move (clamped to `0..=1`).
    pub fn pulled_toward(mut self, home: f64, pull: f64) -> Self {
        self.home = home.clamp(self.min, self.max);
        self.pull = pull.clamp(0.0, 1.0);
        self
    }

    /// Moves once and returns the new value.
    pub fn advance(&mut self, rng: &mut impl Rng) -> f64 {
        let jitter = if self.step > 0.0 {
            rng.random_range(-self.step..=self.step)
        } else {
            0.0
        };
        let pulled = self.value + (self.home - self.value) * self.pull;
        self.value = (pulled + jitter).clamp(self.min, self.max);
        self.value
    }

    /// Jumps to `value`, clamped into the range.
    pub fn set(&mut self, value: f64) {
        self.value = value.clamp(self.min, self.max);
    }
}

/// When a device reports. A steady device always does unless an offline alert silenced it; a
/// flaky one also goes quiet for [`OUTAGE`] after every [`UPTIME`]. Times are measured from the
/// start of the simulation.
#[derive(Debug, Clone, PartialEq)]
struct Presence {
    /// The current or last outage: `quiet_from..quiet_until`.
    quiet_from: Duration,
    quiet_until: Duration,
    /// When the next outage of a flaky device begins; `None` for a steady device.
    next_outage: Option<Duration>,
}

impl Presence {
    fn steady() -> Self {
        Self {
            quiet_from: Duration::ZERO,
            quiet_until: Duration::ZERO,
            next_outage: None,
        }
    }

    /// A flaky device, half the time starting in an outage so a fresh demo shows quiet devices.
    fn flaky(rng: &mut impl Rng) -> Self {
        if rng.random_bool(0.5) {
            let quiet_until = rng.random_range(OUTAGE);
            Self {
                quiet_from: Duration::ZERO,
                quiet_until,
                next_outage: Some(quiet_until + rng.random_range(UPTIME)),
            }
        } else {
            Self {
                quiet_from: Duration::ZERO,
                quiet_until: Duration::ZERO,
                next_outage: Some(rng.random_range(Duration::ZERO..=*UPTIME.end())),
            }
        }
    }

    fn is_quiet(&self, now: Duration) -> bool {
        self.quiet_from <= now && now < self.quiet_until
    }

    /// How long the device has been quiet, if it is.
    fn quiet_for(&self, now: Duration) -> Option<Duration> {
        self.is_quiet(now)
            .then(|| now.saturating_sub(self.quiet_from))
    }

    /// Advances the schedule to `now`; whether the device reports at `now`.
    fn reports(&mut self, now: Duration, rng: &mut impl Rng) -> bool {
        if let Some(next) = self.next_outage
            && now >= next
            && !self.is_quiet(now)
        {
            self.quiet_from = now;
            self.quiet_until = now + rng.random_range(OUTAGE);
            self.next_outage = Some(self.quiet_until + rng.random_range(UPTIME));
        }
        !self.is_quiet(now)
    }

    /// Keeps the device quiet from `now` for at least `len`.
    fn silence(&mut self, now: Duration, len: Duration) {
        if !self.is_quiet(now) {
            self.quiet_from = now;
        }
        self.quiet_until = self.quiet_until.max(now + len);
        if let Some(next) = &mut self.next_outage {
            *next = (*next).max(self.quiet_until + *UPTIME.start());
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AlertKind {
    BatteryLow,
    TempHigh,
    DeviceOffline,
    SignalWeak,
    DoorOpen,
}

impl AlertKind {
    const ALL: [Self; 5] = [
        Self::BatteryLow,
        Self::TempHigh,
        Self::DeviceOffline,
        Self::SignalWeak,
        Self::DoorOpen,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::BatteryLow => "battery_low",
            Self::TempHigh => "temp_high",
            Self::DeviceOffline => "device_offline",
            Self::SignalWeak => "signal_weak",
            Self::DoorOpen => "door_open",
        }
    }
}

/// A severity from a roll in `[0, 1)`: mostly 1–3; 4 and 5 (critical) are rarer.
fn severity(roll: f64) -> i32 {
    const WEIGHTS: [(i32, f64); 5] = [(1, 0.30), (2, 0.30), (3, 0.25), (4, 0.10), (5, 0.05)];
    let mut acc = 0.0;
    for (severity, weight) in WEIGHTS {
        acc += weight;
        if roll < acc {
            return severity;
        }
    }
    5
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AlertAction {
    Insert,
    Acknowledge,
    Close,
}

/// What one alert change of a tenant with `open` open alerts should be, from a roll in
/// `[0, 1)`. Inserts grow likelier below [`OPEN_TARGET`] and rarer above it; of the rest, three
/// in four close an alert (open or acknowledged) and one acknowledges, which keeps about half as
/// many acknowledged alerts as open ones.
fn choose_action(open: i64, roll: f64) -> AlertAction {
    // At `OPEN_TARGET` inserts balance acknowledgements and closes (see the test).
    let insert_share = (0.43 + (OPEN_TARGET - open) as f64 * 0.05).clamp(0.05, 0.95);
    if open <= 0 || roll < insert_share {
        AlertAction::Insert
    } else if roll < insert_share + (1.0 - insert_share) * 0.75 {
        AlertAction::Close
    } else {
        AlertAction::Acknowledge
    }
}

/// The chance that a tenant's alerts change in one tick; higher below [`OPEN_LOW`] so a fresh
/// demo fills up quickly.
fn change_chance(base: f64, open: i64) -> f64 {
    let chance = if open < OPEN_LOW { base * 3.0 } else { base };
    chance.clamp(0.0, 1.0)
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// A device as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
struct DeviceRow {
    tenant_id: String,
    device_id: String,
    site_id: String,
    battery_pct: Option<f64>,
}

/// One simulated device: its readings in memory and when it reports.
#[derive(Debug, Clone)]
struct SimDevice {
    tenant: usize,
    device_id: String,
    site_id: String,
    temp_c: RandomWalk,
    humidity_pct: RandomWalk,
    battery_pct: RandomWalk,
    signal_dbm: RandomWalk,
    power_w: RandomWalk,
    /// `devices.battery_pct` as last written (or read); `None` when empty.
    stored_battery: Option<f64>,
    presence: Presence,
}

impl SimDevice {
    /// Walks sized for ticks of `dt` seconds: steps grow with `sqrt(dt)` and pulls with `dt`,
    /// so values wander at the same pace in wall time whatever the interval.
    fn new(tenant: usize, row: DeviceRow, dt: f64, presence: Presence, rng: &mut impl Rng) -> Self {
        let spread = dt.sqrt();
        let pull = |per_second: f64| 1.0 - (-per_second * dt).exp();
        let walk = |rng: &mut dyn rand::RngCore,
                    home: RangeInclusive<f64>,
                    bounds: (f64, f64),
                    step: f64,
                    per_second_pull: f64| {
            let home = rng.random_range(home);
            RandomWalk::new(home, bounds.0, bounds.1, step * spread)
                .pulled_toward(home, pull(per_second_pull))
        };
        let battery = row
            .battery_pct
            .unwrap_or_else(|| rng.random_range(40.0..=100.0));
        Self {
            tenant,
            temp_c: walk(rng, 18.0..=26.0, (-20.0, 60.0), 0.15, 0.002),
            humidity_pct: walk(rng, 35.0..=60.0, (0.0, 100.0), 0.4, 0.002),
            battery_pct: RandomWalk::new(battery, 0.0, 100.0, 0.02 * spread),
            signal_dbm: walk(rng, -95.0..=-60.0, (-120.0, -40.0), 0.8, 0.005),
            power_w: walk(rng, 20.0..=150.0, (0.0, 500.0), 1.5, 0.003),
            stored_battery: row.battery_pct,
            device_id: row.device_id,
            site_id: row.site_id,
            presence,
        }
    }

    /// Moves every walk once and returns the reading.
    fn read(&mut self, drain: f64, rng: &mut impl Rng) -> Value {
        self.battery_pct.set(self.battery_pct.value - drain);
        if self.battery_pct.value <= BATTERY_REPLACED_AT {
            self.battery_pct.set(rng.random_range(90.0..=100.0));
        }
        json!({
            "temp_c": round1(self.temp_c.advance(rng)),
            "humidity_pct": round1(self.humidity_pct.advance(rng)),
            "battery_pct": round1(self.battery_pct.advance(rng)),
            "signal_dbm": self.signal_dbm.advance(rng).round() as i64,
            "power_w": round1(self.power_w.advance(rng)),
        })
    }

    fn battery_to_write(&self) -> Option<f64> {
        let now = round1(self.battery_pct.value);
        match self.stored_battery {
            Some(stored) if (now - stored).abs() < BATTERY_WRITE_DELTA => None,
            _ => Some(now),
        }
    }
}

#[derive(Debug, Clone)]
struct SimTenant {
    /// Indexes into [`Simulator::devices`].
    devices: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
struct NewAlert {
    device_id: String,
    site_id: String,
    kind: AlertKind,
    severity: i32,
    summary: String,
}

#[derive(Debug, Clone, PartialEq)]
enum AlertChange {
    Insert(NewAlert),
    Acknowledge,
    Close,
}

/// What happened since the last report line.
#[derive(Debug, Default)]
struct Stats {
    rows: u64,
    battery_updates: u64,
    alerts_opened: u64,
    alerts_acknowledged: u64,
    alerts_closed: u64,
    failed_ticks: u64,
    /// As of the last tick.
    quiet_devices: usize,
    open_alerts: i64,
}

/// The whole simulated fleet; [`Simulator::tick`] writes one step of it.
struct Simulator {
    rng: StdRng,
    tenants: Vec<SimTenant>,
    tenant_ids: Vec<String>,
    devices: Vec<SimDevice>,
    /// Battery drain per tick.
    drain: f64,
    /// The chance of one alert change per tenant per tick, at the usual pace.
    alert_chance: f64,
    next_battery_write: Duration,
    stats: Stats,
}

impl Simulator {
    /// A simulation of `rows`, grouped by the tenants of `tenant_ids` (rows of other tenants
    /// are ignored), with [`FLAKY_SHARE`] of the devices picked as flaky.
    fn new(
        rows: Vec<DeviceRow>,
        tenant_ids: &[String],
        interval: Duration,
        mut rng: StdRng,
    ) -> Self {
        let dt = interval.as_secs_f64();
        let index: HashMap<&str, usize> = tenant_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let rows: Vec<(usize, DeviceRow)> = rows
            .into_iter()
            .filter_map(|row| index.get(row.tenant_id.as_str()).map(|&t| (t, row)))
            .collect();
        let flaky_count = (rows.len() as f64 * FLAKY_SHARE).round() as usize;
        let flaky: HashSet<usize> =
            rand::seq::index::sample(&mut rng, rows.len(), flaky_count.min(rows.len()))
                .into_iter()
                .collect();
        let mut tenants: Vec<SimTenant> = tenant_ids
            .iter()
            .map(|_| SimTenant {
                devices: Vec::new(),
            })
            .collect();
        let mut devices = Vec::with_capacity(rows.len());
        for (i, (tenant, row)) in rows.into_iter().enumerate() {
            let presence = if flaky.contains(&i) {
                Presence::flaky(&mut rng)
            } else {
                Presence::steady()
            };
            tenants[tenant].devices.push(devices.len());
            devices.push(SimDevice::new(tenant, row, dt, presence, &mut rng));
        }
        Self {
            rng,
            tenants,
            tenant_ids: tenant_ids.to_vec(),
            devices,
            drain: BATTERY_DRAIN_PER_SECOND * dt,
            alert_chance: (dt / ALERT_CHANGE_EVERY.as_secs_f64()).min(1.0),
            next_battery_write: BATTERY_WRITE_EVERY,
            stats: Stats::default(),
        }
    }

    fn flaky_devices(&self) -> usize {
        self.devices
            .iter()
            .filter(|d| d.presence.next_outage.is_some())
            .count()
    }

    /// Advances every device to `now`: the readings of those that report, by device index.
    fn step(&mut self, now: Duration) -> Vec<(usize, Value)> {
        let mut readings = Vec::with_capacity(self.devices.len());
        for (i, device) in self.devices.iter_mut().enumerate() {
            if device.presence.reports(now, &mut self.rng) {
                readings.push((i, device.read(self.drain, &mut self.rng)));
            }
        }
        readings
    }

    /// Devices whose battery moved enough to be written, with the value to write.
    fn battery_changes(&self) -> Vec<(usize, f64)> {
        self.devices
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.battery_to_write().map(|value| (i, value)))
            .collect()
    }

    /// Whether, and how, the alerts of `tenant` change in this tick.
    fn plan_alert(&mut self, tenant: usize, open: i64, now: Duration) -> Option<AlertChange> {
        if !self.rng.random_bool(change_chance(self.alert_chance, open)) {
            return None;
        }
        match choose_action(open, self.rng.random()) {
            AlertAction::Insert => self.new_alert(tenant, now).map(AlertChange::Insert),
            AlertAction::Acknowledge => Some(AlertChange::Acknowledge),
            AlertAction::Close => Some(AlertChange::Close),
        }
    }

    /// A new alert about a device of `tenant`, moving that device's readings to match it.
    fn new_alert(&mut self, tenant: usize, now: Duration) -> Option<NewAlert> {
        let kind = *AlertKind::ALL.choose(&mut self.rng)?;
        let members = &self.tenants.get(tenant)?.devices;
        let mut index = *members.choose(&mut self.rng)?;
        let mut quiet_minutes = None;
        if kind == AlertKind::DeviceOffline {
            let quiet: Vec<(usize, Duration)> = members
                .iter()
                .filter_map(|&i| {
                    let quiet = self.devices.get(i)?.presence.quiet_for(now)?;
                    (quiet >= QUIET_ENOUGH_FOR_ALERT).then_some((i, quiet))
                })
                .collect();
            if let Some(&(i, quiet)) = quiet.choose(&mut self.rng) {
                index = i;
                quiet_minutes = Some(quiet.as_secs().div_ceil(60));
            }
        }
        let severity = severity(self.rng.random());
        let rng = &mut self.rng;
        let device = self.devices.get_mut(index)?;
        let (id, site) = (&device.device_id, &device.site_id);
        let summary = match kind {
            AlertKind::BatteryLow => {
                device.battery_pct.set(rng.random_range(6.0..=19.0));
                let value = device.battery_pct.value;
                format!("Battery low on {id} at {site}: {value:.0}%")
            }
            AlertKind::TempHigh => {
                device.temp_c.set(rng.random_range(38.0..=48.0));
                let value = device.temp_c.value;
                format!("High temperature on {id} at {site}: {value:.1} °C")
            }
            AlertKind::SignalWeak => {
                device.signal_dbm.set(rng.random_range(-118.0..=-106.0));
                let value = device.signal_dbm.value;
                format!("Weak signal on {id} at {site}: {value:.0} dBm")
            }
            AlertKind::DoorOpen => {
                let minutes = rng.random_range(3..=30);
                format!("Door open on {id} at {site} for {minutes} min")
            }
            AlertKind::DeviceOffline => match quiet_minutes {
                Some(minutes) => format!("{id} at {site} has not reported for {minutes} min"),
                None => {
                    device
                        .presence
                        .silence(now, rng.random_range(FORCED_OUTAGE));
                    format!("{id} at {site} stopped reporting")
                }
            },
        };
        Some(NewAlert {
            device_id: device.device_id.clone(),
            site_id: device.site_id.clone(),
            kind,
            severity,
            summary,
        })
    }

    /// One step: telemetry of every reporting device in one insert, changed batteries every
    /// [`BATTERY_WRITE_EVERY`], and at most one alert change per tenant.
    async fn tick(&mut self, pool: &PgPool, now: Duration) -> anyhow::Result<()> {
        let readings = self.step(now);
        self.stats.quiet_devices = self.devices.len() - readings.len();
        if !readings.is_empty() {
            let ts = OffsetDateTime::now_utc();
            let mut tenant_ids = Vec::with_capacity(readings.len());
            let mut device_ids = Vec::with_capacity(readings.len());
            let mut metrics = Vec::with_capacity(readings.len());
            for (i, reading) in readings {
                let device = &self.devices[i];
                tenant_ids.push(self.tenant_ids[device.tenant].as_str());
                device_ids.push(device.device_id.as_str());
                metrics.push(reading);
            }
            let stamps = vec![ts; metrics.len()];
            let written = sqlx::query(
                "INSERT INTO telemetry (tenant_id, device_id, ts, metrics) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::jsonb[])",
            )
            .bind(&tenant_ids)
            .bind(&device_ids)
            .bind(&stamps)
            .bind(&metrics)
            .execute(pool)
            .await
            .context("cannot write telemetry")?
            .rows_affected();
            self.stats.rows += written;
        }

        if now >= self.next_battery_write {
            self.write_batteries(pool).await?;
            self.next_battery_write = now + BATTERY_WRITE_EVERY;
        }

        let open: Vec<i64> = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM alerts a \
                      WHERE a.tenant_id = t.tenant_id AND a.status = 'OPEN') \
               FROM UNNEST($1::text[]) WITH ORDINALITY AS t(tenant_id, n) \
              ORDER BY t.n",
        )
        .bind(&self.tenant_ids)
        .fetch_all(pool)
        .await
        .context("cannot count open alerts")?;
        self.stats.open_alerts = open.iter().sum();
        for (tenant, count) in open.into_iter().enumerate() {
            if let Some(change) = self.plan_alert(tenant, count, now) {
                self.apply_alert(pool, tenant, change).await?;
            }
        }
        Ok(())
    }

    async fn write_batteries(&mut self, pool: &PgPool) -> anyhow::Result<()> {
        let changes = self.battery_changes();
        if changes.is_empty() {
            return Ok(());
        }
        let mut tenant_ids = Vec::with_capacity(changes.len());
        let mut device_ids = Vec::with_capacity(changes.len());
        let mut values = Vec::with_capacity(changes.len());
        for &(i, value) in &changes {
            let device = &self.devices[i];
            tenant_ids.push(self.tenant_ids[device.tenant].as_str());
            device_ids.push(device.device_id.as_str());
            values.push(value);
        }
        let updated = sqlx::query(
            "UPDATE devices AS d SET battery_pct = u.battery_pct \
               FROM UNNEST($1::text[], $2::text[], $3::float8[]) \
                    AS u(tenant_id, device_id, battery_pct) \
              WHERE d.tenant_id = u.tenant_id AND d.device_id = u.device_id",
        )
        .bind(&tenant_ids)
        .bind(&device_ids)
        .bind(&values)
        .execute(pool)
        .await
        .context("cannot write battery levels")?
        .rows_affected();
        for (i, value) in changes {
            self.devices[i].stored_battery = Some(value);
        }
        self.stats.battery_updates += updated;
        Ok(())
    }

    async fn apply_alert(
        &mut self,
        pool: &PgPool,
        tenant: usize,
        change: AlertChange,
    ) -> anyhow::Result<()> {
        let tenant_id = &self.tenant_ids[tenant];
        match change {
            AlertChange::Insert(alert) => {
                sqlx::query(
                    "INSERT INTO alerts (tenant_id, device_id, site_id, alert_type, severity, summary) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(tenant_id)
                .bind(&alert.device_id)
                .bind(&alert.site_id)
                .bind(alert.kind.as_str())
                .bind(alert.severity)
                .bind(&alert.summary)
                .execute(pool)
                .await
                .with_context(|| format!("cannot open an alert for tenant {tenant_id}"))?;
                self.stats.alerts_opened += 1;
            }
            AlertChange::Acknowledge => {
                let changed = sqlx::query(
                    "UPDATE alerts SET status = 'ACKNOWLEDGED' \
                      WHERE status = 'OPEN' AND alert_id = ( \
                            SELECT alert_id FROM alerts \
                             WHERE tenant_id = $1 AND status = 'OPEN' \
                             ORDER BY random() LIMIT 1)",
                )
                .bind(tenant_id)
                .execute(pool)
                .await
                .with_context(|| format!("cannot acknowledge an alert of tenant {tenant_id}"))?;
                self.stats.alerts_acknowledged += changed.rows_affected();
            }
            AlertChange::Close => {
                let changed = sqlx::query(
                    "UPDATE alerts SET status = 'CLOSED', closed_at = now() \
                      WHERE status <> 'CLOSED' AND alert_id = ( \
                            SELECT alert_id FROM alerts \
                             WHERE tenant_id = $1 AND status IN ('OPEN', 'ACKNOWLEDGED') \
                             ORDER BY random() LIMIT 1)",
                )
                .bind(tenant_id)
                .execute(pool)
                .await
                .with_context(|| format!("cannot close an alert of tenant {tenant_id}"))?;
                self.stats.alerts_closed += changed.rows_affected();
            }
        }
        Ok(())
    }

    /// Logs what happened since the last report, and starts counting again.
    fn report(&mut self) {
        let stats = std::mem::take(&mut self.stats);
        tracing::info!(
            rows = stats.rows,
            battery_updates = stats.battery_updates,
            alerts_opened = stats.alerts_opened,
            alerts_acknowledged = stats.alerts_acknowledged,
            alerts_closed = stats.alerts_closed,
            open_alerts = stats.open_alerts,
            quiet_devices = stats.quiet_devices,
            failed_ticks = stats.failed_ticks,
            "simulator: last minute"
        );
        self.stats.open_alerts = stats.open_alerts;
        self.stats.quiet_devices = stats.quiet_devices;
    }
}

// ---------------------------------------------------------------------------------------------
// Database.
// ---------------------------------------------------------------------------------------------

/// Creates the demo tenants, their users and devices where missing; changes nothing that
/// exists, so running it again is harmless. Returns the demo logins that exist afterwards.
pub async fn seed(pool: &PgPool, args: &SimulateArgs) -> anyhow::Result<Vec<DemoLogin>> {
    args.validate()?;
    let mut rng = StdRng::from_os_rng();
    let logins = planned_logins(&args.tenants);
    let emails: Vec<&str> = logins.iter().map(|l| l.email.as_str()).collect();

    let existing: HashSet<String> =
        sqlx::query_scalar("SELECT email FROM users WHERE email = ANY($1::text[])")
            .bind(&emails)
            .fetch_all(pool)
            .await
            .context("cannot read the existing demo users")?
            .into_iter()
            .collect();
    let missing: Vec<&DemoLogin> = logins
        .iter()
        .filter(|l| !existing.contains(&l.email))
        .collect();
    // Hashing is deliberately slow; keep it off the async workers.
    let hashes = {
        let password = args.password.clone();
        let count = missing.len();
        let mut rng = StdRng::from_rng(&mut rng);
        tokio::task::spawn_blocking(move || {
            (0..count)
                .map(|_| hash_password(&password, &mut rng))
                .collect::<anyhow::Result<Vec<String>>>()
        })
        .await
        .context("the password hashing task failed")??
    };

    let mut tx = pool
        .begin()
        .await
        .context("cannot start the seed transaction")?;

    let names: Vec<String> = args.tenants.iter().map(|t| tenant_name(t)).collect();
    let tenants_created = sqlx::query(
        "INSERT INTO tenants (tenant_id, name) \
         SELECT * FROM UNNEST($1::text[], $2::text[]) \
         ON CONFLICT (tenant_id) DO NOTHING",
    )
    .bind(&args.tenants)
    .bind(&names)
    .execute(&mut *tx)
    .await
    .context("cannot create the demo tenants")?
    .rows_affected();

    let users_created = if missing.is_empty() {
        0
    } else {
        let emails: Vec<&str> = missing.iter().map(|l| l.email.as_str()).collect();
        let tenants: Vec<&str> = missing.iter().map(|l| l.tenant_id.as_str()).collect();
        let roles: Vec<&str> = missing.iter().map(|l| l.role).collect();
        sqlx::query(
            "INSERT INTO users (email, password_hash, tenant_id, role) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) \
             ON CONFLICT (email) DO NOTHING",
        )
        .bind(&emails)
        .bind(&hashes)
        .bind(&tenants)
        .bind(&roles)
        .execute(&mut *tx)
        .await
        .context("cannot create the demo users")?
        .rows_affected()
    };

    let mut devices_created = 0;
    let all = args.tenants.iter().flat_map(|tenant| {
        planned_devices(args.devices, args.sites).map(move |(device, site)| (tenant, device, site))
    });
    let mut chunk = Chunk::default();
    for (tenant, device, site) in all {
        chunk.tenant_ids.push(tenant.as_str());
        chunk.device_ids.push(device);
        chunk.site_ids.push(site);
        chunk.batteries.push(round1(rng.random_range(40.0..=100.0)));
        if chunk.device_ids.len() >= SEED_CHUNK {
            devices_created += chunk.insert(&mut tx).await?;
            chunk = Chunk::default();
        }
    }
    if !chunk.device_ids.is_empty() {
        devices_created += chunk.insert(&mut tx).await?;
    }

    tx.commit().await.context("cannot commit the demo data")?;
    tracing::info!(
        tenants_created,
        users_created,
        devices_created,
        "demo data seeded"
    );

    let stored: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT email, tenant_id::text, role FROM users WHERE email = ANY($1::text[])",
    )
    .bind(&emails)
    .fetch_all(pool)
    .await
    .context("cannot read the demo users back")?;
    let stored: HashSet<(&str, &str, &str)> = stored
        .iter()
        .map(|(e, t, r)| (e.as_str(), t.as_str(), r.as_str()))
        .collect();
    let (usable, foreign): (Vec<DemoLogin>, Vec<DemoLogin>) = logins
        .into_iter()
        .partition(|l| stored.contains(&(l.email.as_str(), l.tenant_id.as_str(), l.role)));
    for l in &foreign {
        tracing::warn!(
            email = %l.email,
            tenant = %l.tenant_id,
            "a user with this e-mail exists with another tenant or role; left as it is"
        );
    }
    Ok(usable)
}

/// One batch of devices to insert.
#[derive(Default)]
struct Chunk<'a> {
    tenant_ids: Vec<&'a str>,
    device_ids: Vec<String>,
    site_ids: Vec<String>,
    batteries: Vec<f64>,
}

impl Chunk<'_> {
    async fn insert(&self, tx: &mut sqlx::PgConnection) -> anyhow::Result<u64> {
        Ok(sqlx::query(
            "INSERT INTO devices (tenant_id, device_id, site_id, battery_pct) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::float8[]) \
             ON CONFLICT (tenant_id, device_id) DO NOTHING",
        )
        .bind(&self.tenant_ids)
        .bind(&self.device_ids)
        .bind(&self.site_ids)
        .bind(&self.batteries)
        .execute(tx)
        .await
        .context("cannot create the demo devices")?
        .rows_affected())
    }
}

/// The simulated devices as stored (their site may differ from a fresh seed's if an earlier
/// run used another site count).
async fn load_devices(pool: &PgPool, args: &SimulateArgs) -> anyhow::Result<Vec<DeviceRow>> {
    let mut tenant_ids = Vec::new();
    let mut device_ids = Vec::new();
    for tenant in &args.tenants {
        for (device, _) in planned_devices(args.devices, args.sites) {
            tenant_ids.push(tenant.as_str());
            device_ids.push(device);
        }
    }
    sqlx::query_as(
        "SELECT d.tenant_id::text AS tenant_id, d.device_id::text AS device_id, \
                d.site_id::text AS site_id, d.battery_pct \
           FROM devices d \
           JOIN UNNEST($1::text[], $2::text[]) AS w(tenant_id, device_id) \
             ON d.tenant_id = w.tenant_id AND d.device_id = w.device_id \
          ORDER BY d.tenant_id, d.device_id",
    )
    .bind(&tenant_ids)
    .bind(&device_ids)
    .fetch_all(pool)
    .await
    .context("cannot read the demo devices")
}

/// Runs `attempt` until it succeeds, waiting with capped backoff between failures; `None` when
/// `shutdown` resolves first.
async fn until_ok<T, S, F, Fut>(what: &str, shutdown: &mut Pin<&mut S>, mut attempt: F) -> Option<T>
where
    S: Future<Output = ()>,
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut backoff = Backoff::new(RETRY_BASE, RETRY_CAP);
    loop {
        let result = tokio::select! {
            () = shutdown.as_mut() => return None,
            result = attempt() => result,
        };
        match result {
            Ok(value) => return Some(value),
            Err(e) => {
                let delay = backoff.next_delay().max(RETRY_BASE);
                tracing::warn!(error = format!("{e:#}"), retry_in = ?delay, "cannot {what}; retrying");
                tokio::select! {
                    () = shutdown.as_mut() => return None,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Seeds, then writes telemetry and alert changes every interval until `shutdown` resolves
/// (or, with `seed_only`, returns after seeding). Invalid arguments fail at once; database
/// errors are logged and retried with backoff capped at 10 s, never returned.
pub async fn run(
    pool: PgPool,
    args: SimulateArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    args.validate()?;
    let mut shutdown = pin!(shutdown);

    let Some(logins) = until_ok("seed the demo data", &mut shutdown, || seed(&pool, &args)).await
    else {
        return Ok(());
    };
    for login in &logins {
        tracing::info!(tenant = %login.tenant_id, email = %login.email, role = login.role, "demo login");
    }
    print!("{}", login_table(&logins, &args.password));
    if args.seed_only {
        return Ok(());
    }

    let Some(rows) = until_ok("read the demo devices", &mut shutdown, || {
        load_devices(&pool, &args)
    })
    .await
    else {
        return Ok(());
    };
    let interval = args.interval();
    let mut sim = Simulator::new(rows, &args.tenants, interval, StdRng::from_os_rng());
    tracing::info!(
        tenants = sim.tenants.len(),
        devices = sim.devices.len(),
        flaky = sim.flaky_devices(),
        interval_ms = args.interval_ms,
        "simulating"
    );
    if sim.devices.is_empty() {
        tracing::warn!("no demo devices found; only alerts will change");
    }

    let start = Instant::now();
    let mut next_report = REPORT_EVERY;
    let mut backoff = Backoff::new(RETRY_BASE, RETRY_CAP);
    loop {
        let began = Instant::now();
        let now = began.duration_since(start);
        let outcome = tokio::select! {
            () = shutdown.as_mut() => break,
            outcome = sim.tick(&pool, now) => outcome,
        };
        let resume_at = match outcome {
            Ok(()) => {
                backoff.reset();
                began + interval
            }
            Err(e) => {
                sim.stats.failed_ticks += 1;
                let delay = backoff.next_delay().max(interval);
                tracing::warn!(error = format!("{e:#}"), retry_in = ?delay, "simulator tick failed");
                Instant::now() + delay
            }
        };
        if now >= next_report {
            sim.report();
            next_report = now + REPORT_EVERY;
        }
        tokio::select! {
            () = shutdown.as_mut() => break,
            () = tokio::time::sleep_until(resume_at) => {}
        }
    }
    tracing::info!("simulator stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SimulateArgs {
        SimulateArgs {
            tenants: vec!["acme".into(), "globex".into()],
            devices: 300,
            sites: 6,
            interval_ms: 1000,
            password: "pulse-demo".into(),
            seed_only: false,
        }
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    fn rows(tenants: &[&str], devices: u32, sites: u32) -> Vec<DeviceRow> {
        tenants
            .iter()
            .flat_map(|t| {
                planned_devices(devices, sites).map(move |(device_id, site_id)| DeviceRow {
                    tenant_id: (*t).to_owned(),
                    device_id,
                    site_id,
                    battery_pct: Some(80.0),
                })
            })
            .collect()
    }

    fn error_of(args: &SimulateArgs) -> String {
        format!("{:#}", args.validate().unwrap_err())
    }

    #[test]
    fn defaults_are_valid() {
        args().validate().unwrap();
    }

    #[test]
    fn clap_reads_flags_and_splits_tenants() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            sim: SimulateArgs,
        }
        let cli = Cli::try_parse_from([
            "x",
            "--tenants",
            "a,b,c",
            "--devices",
            "12",
            "--sites",
            "3",
            "--interval-ms",
            "250",
            "--seed-only",
        ])
        .unwrap();
        assert_eq!(cli.sim.tenants, ["a", "b", "c"]);
        assert_eq!(
            (cli.sim.devices, cli.sim.sites, cli.sim.interval_ms),
            (12, 3, 250)
        );
        assert!(cli.sim.seed_only);
    }

    #[test]
    fn validation_rejects_bad_input_naming_the_variable() {
        let cases: Vec<(SimulateArgs, &str)> = vec![
            (
                SimulateArgs {
                    tenants: vec![],
                    ..args()
                },
                "PULSE_SIM_TENANTS is empty",
            ),
            (
                SimulateArgs {
                    tenants: vec!["acme".into(), "a.b".into()],
                    ..args()
                },
                "PULSE_SIM_TENANTS: \"a.b\" is not a valid tenant id: id contains '.'",
            ),
            (
                SimulateArgs {
                    tenants: vec![" acme".into()],
                    ..args()
                },
                "is not a valid tenant id",
            ),
            (
                SimulateArgs {
                    tenants: vec!["x".repeat(65)],
                    ..args()
                },
                "longer than 64",
            ),
            (
                SimulateArgs {
                    tenants: vec!["acme".into(), "ACME".into()],
                    ..args()
                },
                "PULSE_SIM_TENANTS lists \"ACME\" twice",
            ),
            (
                SimulateArgs {
                    devices: 0,
                    ..args()
                },
                "PULSE_SIM_DEVICES must be between 1 and 100000, got 0",
            ),
            (
                SimulateArgs {
                    devices: 100_001,
                    ..args()
                },
                "PULSE_SIM_DEVICES must be between 1 and 100000, got 100001",
            ),
            (
                SimulateArgs { sites: 0, ..args() },
                "PULSE_SIM_SITES must be between 1 and 1000, got 0",
            ),
            (
                SimulateArgs {
                    sites: 1001,
                    devices: 5000,
                    ..args()
                },
                "PULSE_SIM_SITES must be between 1 and 1000, got 1001",
            ),
            (
                SimulateArgs {
                    devices: 5,
                    sites: 6,
                    ..args()
                },
                "PULSE_SIM_SITES (6) must not exceed PULSE_SIM_DEVICES (5)",
            ),
            (
                SimulateArgs {
                    interval_ms: 49,
                    ..args()
                },
                "PULSE_SIM_INTERVAL_MS must be between 50 and 60000, got 49",
            ),
            (
                SimulateArgs {
                    interval_ms: 60_001,
                    ..args()
                },
                "PULSE_SIM_INTERVAL_MS must be between 50 and 60000, got 60001",
            ),
            (
                SimulateArgs {
                    password: String::new(),
                    ..args()
                },
                "PULSE_DEMO_PASSWORD is empty",
            ),
        ];
        for (bad, expected) in cases {
            let message = error_of(&bad);
            assert!(
                message.contains(expected),
                "{bad:?}: expected {expected:?} in {message:?}"
            );
        }
        // The edges themselves are accepted.
        for ok in [
            SimulateArgs {
                devices: 1,
                sites: 1,
                interval_ms: 50,
                ..args()
            },
            SimulateArgs {
                devices: 100_000,
                sites: 1000,
                interval_ms: 60_000,
                ..args()
            },
            SimulateArgs {
                tenants: vec!["x".repeat(64), "A_b-9".into()],
                ..args()
            },
        ] {
            ok.validate().unwrap();
        }
    }

    #[test]
    fn walk_stays_within_bounds() {
        let mut rng = rng();
        let walks = [
            RandomWalk::new(20.0, -20.0, 60.0, 0.5),
            RandomWalk::new(0.0, 0.0, 1.0, 5.0),
            RandomWalk::new(500.0, 0.0, 100.0, 3.0),
            RandomWalk::new(50.0, 100.0, 0.0, 3.0),
            RandomWalk::new(-80.0, -120.0, -40.0, 2.0).pulled_toward(-60.0, 0.01),
            RandomWalk::new(1.0, 0.0, 2.0, 0.0),
        ];
        for mut walk in walks {
            assert!(walk.min <= walk.max);
            assert!((walk.min..=walk.max).contains(&walk.value));
            for _ in 0..10_000 {
                let before = walk.value;
                let v = walk.advance(&mut rng);
                assert!((walk.min..=walk.max).contains(&v), "{walk:?}");
                assert!(
                    (v - before).abs() <= walk.step + (walk.home - before).abs() * walk.pull + 1e-9
                );
            }
        }
    }

    #[test]
    fn walk_moves_and_is_pulled_home() {
        let mut rng = rng();
        let mut walk = RandomWalk::new(45.0, -20.0, 60.0, 0.5).pulled_toward(22.0, 0.01);
        let values: Vec<f64> = (0..10_000).map(|_| walk.advance(&mut rng)).collect();
        let distinct: HashSet<u64> = values.iter().map(|v| v.to_bits()).collect();
        assert!(distinct.len() > 9_000, "the walk barely moves");
        let tail = &values[5_000..];
        let mean = tail.iter().sum::<f64>() / tail.len() as f64;
        assert!((mean - 22.0).abs() < 3.0, "mean {mean} far from home");
        walk.set(1e9);
        assert_eq!(walk.value, 60.0);
    }

    #[test]
    fn names_are_valid_ids_and_zero_padded() {
        assert_eq!(device_id(1, 300), "dev-0001");
        assert_eq!(device_id(300, 300), "dev-0300");
        assert_eq!(device_id(9_999, 9_999), "dev-9999");
        assert_eq!(device_id(7, 10_000), "dev-00007");
        assert_eq!(device_id(100_000, 100_000), "dev-100000");
        assert_eq!(site_id(1, 6), "site-01");
        assert_eq!(site_id(6, 6), "site-06");
        assert_eq!(site_id(3, 1000), "site-0003");
        for (device, site) in planned_devices(1_000, 7) {
            pulse_proto::validate_id(&device).unwrap();
            pulse_proto::validate_id(&site).unwrap();
        }
        // Zero padding keeps text order equal to numeric order.
        let names: Vec<String> = planned_devices(12_000, 3).map(|(d, _)| d).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(tenant_name("acme"), "Acme Operations");
        assert_eq!(tenant_name("globex"), "Globex Operations");
        assert_eq!(tenant_name("x-1"), "X-1 Operations");
    }

    #[test]
    fn sites_are_round_robin() {
        let plan: Vec<(String, String)> = planned_devices(14, 6).collect();
        let sites: Vec<&str> = plan.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            sites,
            [
                "site-01", "site-02", "site-03", "site-04", "site-05", "site-06", "site-01",
                "site-02", "site-03", "site-04", "site-05", "site-06", "site-01", "site-02"
            ]
        );
        let mut per_site: HashMap<String, usize> = HashMap::new();
        for (_, site) in planned_devices(300, 7) {
            *per_site.entry(site).or_default() += 1;
        }
        assert_eq!(per_site.len(), 7);
        let (min, max) = (
            per_site.values().min().unwrap(),
            per_site.values().max().unwrap(),
        );
        assert!(max - min <= 1, "{per_site:?}");
        assert_eq!(site_of(5, 0), 1, "no division by zero");
    }

    #[test]
    fn logins_are_lower_case_with_both_roles() {
        let logins = planned_logins(&["acme".into(), "GloBex".into()]);
        let got: Vec<(&str, &str, &str)> = logins
            .iter()
            .map(|l| (l.tenant_id.as_str(), l.email.as_str(), l.role))
            .collect();
        assert_eq!(
            got,
            [
                ("acme", "admin@acme.example", "customer_admin"),
                ("acme", "viewer@acme.example", "customer_viewer"),
                ("GloBex", "admin@globex.example", "customer_admin"),
                ("GloBex", "viewer@globex.example", "customer_viewer"),
            ]
        );
        let table = login_table(&logins, "pulse-demo");
        assert!(table.contains("password \"pulse-demo\""), "{table}");
        assert!(
            table.contains("  acme    admin@acme.example     customer_admin\n"),
            "{table}"
        );
        let table = login_table(&logins, "s3cret");
        assert!(!table.contains("s3cret"), "{table}");
    }

    #[test]
    fn password_hash_is_argon2id_and_verifies() {
        use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
        let mut rng = rng();
        let hash = hash_password("pulse-demo", &mut rng).unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let parsed = PasswordHash::new(&hash).unwrap();
        Argon2::default()
            .verify_password(b"pulse-demo", &parsed)
            .unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"wrong", &parsed)
                .is_err()
        );
    }

    #[test]
    fn flaky_devices_go_quiet_for_one_to_fifteen_minutes() {
        let mut rng = rng();
        for _ in 0..50 {
            let mut presence = Presence::flaky(&mut rng);
            let mut quiet_since: Option<u64> = None;
            let mut outages = Vec::new();
            for second in 0..(6 * 3600) {
                let now = Duration::from_secs(second);
                let reports = presence.reports(now, &mut rng);
                match (reports, quiet_since) {
                    (false, None) => quiet_since = Some(second),
                    (true, Some(since)) => {
                        // An outage under way at the start may have begun before it.
                        if since > 0 {
                            outages.push(second - since);
                        }
                        quiet_since = None;
                    }
                    _ => {}
                }
            }
            assert!(
                !outages.is_empty(),
                "a flaky device never went quiet in 6 h"
            );
            for len in outages {
                assert!((60..=15 * 60 + 1).contains(&len), "outage of {len} s");
            }
        }
        let mut steady = Presence::steady();
        assert!((0..100_000).all(|s| steady.reports(Duration::from_secs(s), &mut rng)));
    }

    #[test]
    fn silencing_keeps_a_device_quiet() {
        let mut rng = rng();
        let mut presence = Presence::steady();
        let t0 = Duration::from_secs(100);
        presence.silence(t0, Duration::from_secs(700));
        assert!(!presence.reports(t0, &mut rng));
        assert!(!presence.reports(t0 + Duration::from_secs(699), &mut rng));
        assert_eq!(
            presence.quiet_for(t0 + Duration::from_secs(650)),
            Some(Duration::from_secs(650))
        );
        assert!(presence.reports(t0 + Duration::from_secs(700), &mut rng));
    }

    #[test]
    fn about_three_percent_of_devices_are_flaky_and_some_go_quiet() {
        let mut sim = Simulator::new(
            rows(&["acme", "globex"], 500, 6),
            &["acme".into(), "globex".into()],
            Duration::from_secs(1),
            rng(),
        );
        assert_eq!(sim.devices.len(), 1000);
        assert_eq!(sim.flaky_devices(), 30);
        assert_eq!(sim.tenants[0].devices.len(), 500);
        assert_eq!(sim.tenants[1].devices.len(), 500);
        let mut fewest = usize::MAX;
        let mut most = 0;
        for second in (0..2700).step_by(15) {
            let readings = sim.step(Duration::from_secs(second));
            fewest = fewest.min(readings.len());
            most = most.max(readings.len());
        }
        assert!(fewest >= 970, "only flaky devices may go quiet");
        assert!(fewest < 1000, "no device went quiet");
        assert!(most > fewest, "quiet devices never came back");
    }

    #[test]
    fn readings_carry_every_metric_in_range() {
        let mut sim = Simulator::new(
            rows(&["acme"], 50, 5),
            &["acme".into()],
            Duration::from_millis(50),
            rng(),
        );
        for second in 0..2000 {
            for (_, reading) in sim.step(Duration::from_millis(second * 50)) {
                let get = |key: &str| reading[key].as_f64().unwrap();
                assert!((-20.0..=60.0).contains(&get("temp_c")));
                assert!((0.0..=100.0).contains(&get("humidity_pct")));
                assert!((0.0..=100.0).contains(&get("battery_pct")));
                assert!((-120.0..=-40.0).contains(&get("signal_dbm")));
                assert!((0.0..=500.0).contains(&get("power_w")));
                assert_eq!(reading.as_object().unwrap().len(), 5);
            }
        }
    }

    #[test]
    fn batteries_are_written_once_they_moved_a_point() {
        let mut sim = Simulator::new(
            rows(&["acme"], 10, 2),
            &["acme".into()],
            Duration::from_secs(1),
            rng(),
        );
        assert!(sim.battery_changes().is_empty());
        sim.devices[3].battery_pct.set(78.4);
        sim.devices[4].battery_pct.set(79.2);
        sim.devices[5].stored_battery = None;
        let changes = sim.battery_changes();
        let changed: Vec<usize> = changes.iter().map(|(i, _)| *i).collect();
        assert_eq!(changed, [3, 5]);
        assert_eq!(changes[0].1, 78.4);
    }

    #[test]
    fn unknown_tenants_rows_are_ignored() {
        let sim = Simulator::new(
            rows(&["acme", "other"], 10, 2),
            &["acme".into()],
            Duration::from_secs(1),
            rng(),
        );
        assert_eq!(sim.devices.len(), 10);
        assert!(sim.devices.iter().all(|d| d.tenant == 0));
    }

    #[test]
    fn severities_are_one_to_five_with_critical_rarer() {
        let mut rng = rng();
        let mut counts = [0usize; 6];
        for _ in 0..100_000 {
            let s = severity(rng.random());
            assert!((1..=5).contains(&s));
            counts[s as usize] += 1;
        }
        let critical = counts[4] + counts[5];
        assert!(critical > 10_000 && critical < 20_000, "{counts:?}");
        assert!(counts[5] < counts[4] && counts[4] < counts[3]);
        assert_eq!(severity(0.0), 1);
        assert_eq!(severity(0.999_999), 5);
    }

    #[test]
    fn actions_keep_open_alerts_hovering_between_ten_and_twenty() {
        assert_eq!(choose_action(0, 0.99), AlertAction::Insert);
        assert_eq!(choose_action(5, 0.5), AlertAction::Insert);
        assert_ne!(choose_action(40, 0.2), AlertAction::Insert);
        // The same flows as the database: a close picks an open or acknowledged alert.
        let mut rng = rng();
        let (mut open, mut acked) = (0i64, 0i64);
        let mut sum = 0i64;
        let mut max = 0;
        let steps = 200_000;
        for step in 0..steps {
            match choose_action(open, rng.random()) {
                AlertAction::Insert => open += 1,
                AlertAction::Acknowledge if open > 0 => {
                    open -= 1;
                    acked += 1;
                }
                AlertAction::Close if open + acked > 0 => {
                    if rng.random_range(0..open + acked) < open {
                        open -= 1;
                    } else {
                        acked -= 1;
                    }
                }
                _ => {}
            }
            if step >= 1_000 {
                sum += open;
                max = max.max(open);
            }
        }
        let mean = sum as f64 / (steps - 1_000) as f64;
        assert!((12.0..=18.0).contains(&mean), "mean open {mean}");
        assert!(max < 35, "open reached {max}");
        assert!(acked < 30, "acknowledged piled up to {acked}");
    }

    #[test]
    fn alert_changes_happen_every_few_seconds_per_tenant() {
        let mut sim = Simulator::new(
            rows(&["acme"], 50, 5),
            &["acme".into()],
            Duration::from_secs(1),
            rng(),
        );
        let ticks = 10_000;
        let changes = (0..ticks)
            .filter(|&s| sim.plan_alert(0, 15, Duration::from_secs(s)).is_some())
            .count();
        let every = ticks as f64 / changes as f64;
        assert!((5.0..=10.0).contains(&every), "one change every {every} s");
        assert!((0.0..=1.0).contains(&change_chance(10.0, 0)));
    }

    #[test]
    fn new_alerts_name_the_device_and_move_its_readings() {
        let mut sim = Simulator::new(
            rows(&["acme"], 40, 4),
            &["acme".into()],
            Duration::from_secs(1),
            rng(),
        );
        let mut seen = HashSet::new();
        for second in 0..2_000 {
            let now = Duration::from_secs(second);
            sim.step(now);
            let Some(alert) = sim.new_alert(0, now) else {
                panic!("no alert for a tenant with devices");
            };
            seen.insert(alert.kind);
            let device = sim
                .devices
                .iter()
                .find(|d| d.device_id == alert.device_id)
                .unwrap();
            assert_eq!(alert.site_id, device.site_id);
            assert!(
                alert.summary.contains(&alert.device_id),
                "{}",
                alert.summary
            );
            assert!(alert.summary.contains(&alert.site_id), "{}", alert.summary);
            assert!((1..=5).contains(&alert.severity));
            match alert.kind {
                AlertKind::BatteryLow => assert!(device.battery_pct.value < 20.0),
                AlertKind::TempHigh => assert!(device.temp_c.value >= 38.0),
                AlertKind::SignalWeak => assert!(device.signal_dbm.value <= -106.0),
                AlertKind::DeviceOffline => assert!(device.presence.is_quiet(now)),
                AlertKind::DoorOpen => assert!(alert.summary.starts_with("Door open on")),
            }
        }
        assert_eq!(seen.len(), AlertKind::ALL.len());
        let mut empty = Simulator::new(Vec::new(), &["acme".into()], Duration::from_secs(1), rng());
        assert!(empty.new_alert(0, Duration::ZERO).is_none());
        assert!(empty.new_alert(9, Duration::ZERO).is_none());
    }
}

//! The whole simulated fleet in memory: which devices report at each step, which batteries
//! moved enough to be written, and which alert change each tenant gets. Free of I/O; the
//! writes are [`crate::tick`]'s.

use std::collections::{HashMap, HashSet};
use std::ops::RangeInclusive;
use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use serde_json::Value;

use crate::alerts::{
    AlertAction, AlertChange, AlertKind, NewAlert, change_chance, choose_action, severity,
};
use crate::device::{BATTERY_DRAIN_PER_SECOND, DeviceRow, SimDevice};
use crate::presence::Presence;

/// Share of devices that go quiet now and then.
const FLAKY_SHARE: f64 = 0.03;
/// How long a device silenced by an offline alert stays quiet: long enough to turn OFFLINE.
const FORCED_OUTAGE: RangeInclusive<Duration> =
    Duration::from_secs(11 * 60)..=Duration::from_secs(15 * 60);
/// A device quiet for this long may be named by an offline alert as it is.
const QUIET_ENOUGH_FOR_ALERT: Duration = Duration::from_secs(60);
/// Changed batteries are written this often, not every tick: each write notifies the fleet.
pub(crate) const BATTERY_WRITE_EVERY: Duration = Duration::from_secs(30);
/// Mean time between two alert changes of one tenant.
const ALERT_CHANGE_EVERY: Duration = Duration::from_millis(7_500);

#[derive(Debug, Clone)]
pub(crate) struct SimTenant {
    /// Indexes into [`Simulator::devices`].
    pub(crate) devices: Vec<usize>,
}

/// What happened since the last report line.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) rows: u64,
    pub(crate) battery_updates: u64,
    pub(crate) alerts_opened: u64,
    pub(crate) alerts_acknowledged: u64,
    pub(crate) alerts_closed: u64,
    pub(crate) failed_ticks: u64,
    /// As of the last tick.
    pub(crate) quiet_devices: usize,
    pub(crate) open_alerts: i64,
}

/// The whole simulated fleet; [`Simulator::tick`] writes one step of it.
pub(crate) struct Simulator {
    pub(crate) rng: StdRng,
    pub(crate) tenants: Vec<SimTenant>,
    pub(crate) tenant_ids: Vec<String>,
    pub(crate) devices: Vec<SimDevice>,
    /// Battery drain per tick.
    pub(crate) drain: f64,
    /// The chance of one alert change per tenant per tick, at the usual pace.
    pub(crate) alert_chance: f64,
    pub(crate) next_battery_write: Duration,
    pub(crate) stats: Stats,
}

impl Simulator {
    /// A simulation of `rows`, grouped by the tenants of `tenant_ids` (rows of other tenants
    /// are ignored), with [`FLAKY_SHARE`] of the devices picked as flaky.
    pub(crate) fn new(
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

    pub(crate) fn flaky_devices(&self) -> usize {
        self.devices
            .iter()
            .filter(|d| d.presence.next_outage.is_some())
            .count()
    }

    /// Advances every device to `now`: the readings of those that report, by device index.
    pub(crate) fn step(&mut self, now: Duration) -> Vec<(usize, Value)> {
        let mut readings = Vec::with_capacity(self.devices.len());
        for (i, device) in self.devices.iter_mut().enumerate() {
            if device.presence.reports(now, &mut self.rng) {
                readings.push((i, device.read(self.drain, &mut self.rng)));
            }
        }
        readings
    }

    /// Devices whose battery moved enough to be written, with the value to write.
    pub(crate) fn battery_changes(&self) -> Vec<(usize, f64)> {
        self.devices
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.battery_to_write().map(|value| (i, value)))
            .collect()
    }

    /// Whether, and how, the alerts of `tenant` change in this tick.
    pub(crate) fn plan_alert(
        &mut self,
        tenant: usize,
        open: i64,
        now: Duration,
    ) -> Option<AlertChange> {
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
    pub(crate) fn new_alert(&mut self, tenant: usize, now: Duration) -> Option<NewAlert> {
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

    /// Logs what happened since the last report, and starts counting again.
    pub(crate) fn report(&mut self) {
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

#[cfg(test)]
mod tests {

    use super::*;
    use crate::naming::planned_devices;
    use crate::testing::rng;

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

    /// A simulation of one tenant, `acme`, with `devices` devices over `sites` sites.
    fn acme(devices: u32, sites: u32, interval: Duration) -> Simulator {
        Simulator::new(
            rows(&["acme"], devices, sites),
            &["acme".into()],
            interval,
            rng(),
        )
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
        let mut sim = acme(50, 5, Duration::from_millis(50));
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
        let mut sim = acme(10, 2, Duration::from_secs(1));
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
    fn alert_changes_happen_every_few_seconds_per_tenant() {
        let mut sim = acme(50, 5, Duration::from_secs(1));
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
        let mut sim = acme(40, 4, Duration::from_secs(1));
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

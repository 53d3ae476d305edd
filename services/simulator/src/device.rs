//! One simulated device: its readings as random walks in memory, its battery as last written,
//! and when it reports.

use std::ops::RangeInclusive;

use rand::Rng;
use serde_json::{Value, json};

use crate::presence::Presence;
use crate::walk::RandomWalk;

/// A battery is written once it moved this many points from the stored value.
const BATTERY_WRITE_DELTA: f64 = 1.0;
/// A battery at or below this is replaced by a full one.
const BATTERY_REPLACED_AT: f64 = 5.0;
/// Battery drain, in points per second of simulated time.
pub(crate) const BATTERY_DRAIN_PER_SECOND: f64 = 0.0005;

/// A device as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct DeviceRow {
    pub(crate) tenant_id: String,
    pub(crate) device_id: String,
    pub(crate) site_id: String,
    pub(crate) battery_pct: Option<f64>,
}

/// One simulated device: its readings in memory and when it reports.
#[derive(Debug, Clone)]
pub(crate) struct SimDevice {
    pub(crate) tenant: usize,
    pub(crate) device_id: String,
    pub(crate) site_id: String,
    pub(crate) temp_c: RandomWalk,
    pub(crate) humidity_pct: RandomWalk,
    pub(crate) battery_pct: RandomWalk,
    pub(crate) signal_dbm: RandomWalk,
    pub(crate) power_w: RandomWalk,
    /// `devices.battery_pct` as last written (or read); `None` when empty.
    pub(crate) stored_battery: Option<f64>,
    pub(crate) presence: Presence,
}

impl SimDevice {
    /// Walks sized for ticks of `dt` seconds: steps grow with `sqrt(dt)` and pulls with `dt`,
    /// so values wander at the same pace in wall time whatever the interval.
    pub(crate) fn new(
        tenant: usize,
        row: DeviceRow,
        dt: f64,
        presence: Presence,
        rng: &mut impl Rng,
    ) -> Self {
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
    pub(crate) fn read(&mut self, drain: f64, rng: &mut impl Rng) -> Value {
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

    pub(crate) fn battery_to_write(&self) -> Option<f64> {
        let now = round1(self.battery_pct.value);
        match self.stored_battery {
            Some(stored) if (now - stored).abs() < BATTERY_WRITE_DELTA => None,
            _ => Some(now),
        }
    }
}

pub(crate) fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

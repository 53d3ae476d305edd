//! How a tenant's alerts change: which kind, how severe, and whether the next change opens,
//! acknowledges or closes one, so the open count hovers around [`OPEN_TARGET`].

/// Below this many open alerts, a tenant's alerts change faster, so a fresh demo fills up.
const OPEN_LOW: i64 = 10;
/// The open alerts per tenant that inserts, acknowledgements and closes balance at; the count
/// hovers around it, mostly between 10 and 20.
pub(crate) const OPEN_TARGET: i64 = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum AlertKind {
    BatteryLow,
    TempHigh,
    DeviceOffline,
    SignalWeak,
    DoorOpen,
}

impl AlertKind {
    pub(crate) const ALL: [Self; 5] = [
        Self::BatteryLow,
        Self::TempHigh,
        Self::DeviceOffline,
        Self::SignalWeak,
        Self::DoorOpen,
    ];

    pub(crate) fn as_str(self) -> &'static str {
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
pub(crate) fn severity(roll: f64) -> i32 {
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
pub(crate) enum AlertAction {
    Insert,
    Acknowledge,
    Close,
}

/// What one alert change of a tenant with `open` open alerts should be, from a roll in
/// `[0, 1)`. Inserts grow likelier below [`OPEN_TARGET`] and rarer above it; of the rest, three
/// in four close an alert (open or acknowledged) and one acknowledges, which keeps about half as
/// many acknowledged alerts as open ones.
pub(crate) fn choose_action(open: i64, roll: f64) -> AlertAction {
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
pub(crate) fn change_chance(base: f64, open: i64) -> f64 {
    let chance = if open < OPEN_LOW { base * 3.0 } else { base };
    chance.clamp(0.0, 1.0)
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewAlert {
    pub(crate) device_id: String,
    pub(crate) site_id: String,
    pub(crate) kind: AlertKind,
    pub(crate) severity: i32,
    pub(crate) summary: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AlertChange {
    Insert(NewAlert),
    Acknowledge,
    Close,
}

#[cfg(test)]
mod tests {
    use rand::Rng as _;

    use super::*;
    use crate::testing::rng;

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
}

//! `pulse_settings`: what the active poller applies to its pushes (the status thresholds and
//! how many devices a fleet message lists), recorded so the web service's REST answers and the
//! database triggers apply the same.

use std::time::Duration;

use pulse_proto::fleet::Thresholds;
use sqlx::{PgConnection, PgPool};

const STALE_AFTER: &str = "stale_after_seconds";
const OFFLINE_AFTER: &str = "offline_after_seconds";
const FLEET_DEVICES_CAP: &str = "fleet_devices_cap";

/// Devices a fleet message lists when no poller has recorded its `PULSE_FLEET_DEVICES_CAP`
/// (the poller's default).
pub const DEFAULT_FLEET_DEVICES_CAP: usize = 1000;

/// What the active poller applies, and what answers about the same data must agree with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub thresholds: Thresholds,
    /// Most devices listed in a fleet message (least healthy first; counts cover all).
    pub fleet_devices_cap: usize,
}

impl Default for Applied {
    fn default() -> Self {
        Self {
            thresholds: Thresholds::default(),
            fleet_devices_cap: DEFAULT_FLEET_DEVICES_CAP,
        }
    }
}

/// Records what the poller applies, replacing what was recorded before.
pub async fn write(pool: &PgPool, applied: &Applied) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO pulse_settings (key, value) VALUES ($1, $2), ($3, $4), ($5, $6) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(STALE_AFTER)
    .bind(seconds(applied.thresholds.stale_after))
    .bind(OFFLINE_AFTER)
    .bind(seconds(applied.thresholds.offline_after))
    .bind(FLEET_DEVICES_CAP)
    .bind(applied.fleet_devices_cap.to_string())
    .execute(pool)
    .await?;
    Ok(())
}

/// A threshold as recorded: seconds to the millisecond (`1.5` for 1500ms, `60` for a minute),
/// as the triggers (`make_interval(secs => value::double precision)`) and [`read`] take them.
fn seconds(d: Duration) -> String {
    (d.as_millis() as f64 / 1000.0).to_string()
}

/// What was recorded; the defaults for anything not recorded (no poller has run yet) or not a
/// number.
pub async fn read(conn: &mut PgConnection) -> Result<Applied, sqlx::Error> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT key, value FROM pulse_settings WHERE key IN ($1, $2, $3)")
            .bind(STALE_AFTER)
            .bind(OFFLINE_AFTER)
            .bind(FLEET_DEVICES_CAP)
            .fetch_all(conn)
            .await?;
    Ok(applied_from(rows))
}

fn applied_from(rows: impl IntoIterator<Item = (String, String)>) -> Applied {
    let mut applied = Applied::default();
    let t = &mut applied.thresholds;
    for (key, value) in rows {
        if key == FLEET_DEVICES_CAP {
            if let Ok(cap) = value.parse::<usize>() {
                applied.fleet_devices_cap = cap;
            }
            continue;
        }
        let Ok(secs) = value.parse::<f64>() else {
            continue;
        };
        let Ok(d) = Duration::try_from_secs_f64(secs.max(0.0)) else {
            continue;
        };
        match key.as_str() {
            STALE_AFTER => t.stale_after = d,
            OFFLINE_AFTER => t.offline_after = d,
            _ => {}
        }
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, value: &str) -> (String, String) {
        (key.to_owned(), value.to_owned())
    }

    #[test]
    fn thresholds_are_recorded_to_the_millisecond() {
        assert_eq!(seconds(Duration::from_secs(60)), "60");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5");
        assert_eq!(seconds(Duration::from_millis(86_400_001)), "86400.001");
        let a = applied_from([
            row(STALE_AFTER, &seconds(Duration::from_millis(1500))),
            row(OFFLINE_AFTER, &seconds(Duration::from_millis(2250))),
        ]);
        assert_eq!(a.thresholds.stale_after, Duration::from_millis(1500));
        assert_eq!(a.thresholds.offline_after, Duration::from_millis(2250));
    }

    #[test]
    fn recorded_values_replace_the_defaults_and_garbage_is_skipped() {
        let a = applied_from([
            row(STALE_AFTER, "30"),
            row(OFFLINE_AFTER, "oops"),
            row(FLEET_DEVICES_CAP, "250"),
        ]);
        assert_eq!(a.thresholds.stale_after, Duration::from_secs(30));
        assert_eq!(
            a.thresholds.offline_after,
            Thresholds::default().offline_after
        );
        assert_eq!(a.fleet_devices_cap, 250);
        let a = applied_from([
            row(OFFLINE_AFTER, "-5"),
            row(STALE_AFTER, "inf"),
            row(FLEET_DEVICES_CAP, "-1"),
        ]);
        assert_eq!(a.thresholds.offline_after, Duration::ZERO);
        assert_eq!(a.thresholds.stale_after, Thresholds::default().stale_after);
        assert_eq!(a.fleet_devices_cap, DEFAULT_FLEET_DEVICES_CAP);
    }
}

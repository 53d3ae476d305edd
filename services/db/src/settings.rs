//! `pulse_settings`: the status thresholds the active poller applies, recorded so the web
//! service's REST answers and the database triggers apply the same ones as its pushes.

use std::time::Duration;

use pulse_proto::fleet::Thresholds;
use sqlx::{PgConnection, PgPool};

const STALE_AFTER: &str = "stale_after_seconds";
const OFFLINE_AFTER: &str = "offline_after_seconds";

/// Records the thresholds, replacing those recorded before.
pub async fn write_thresholds(
    pool: &PgPool,
    stale_after_seconds: u64,
    offline_after_seconds: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO pulse_settings (key, value) VALUES ($1, $2), ($3, $4) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(STALE_AFTER)
    .bind(stale_after_seconds.to_string())
    .bind(OFFLINE_AFTER)
    .bind(offline_after_seconds.to_string())
    .execute(pool)
    .await?;
    Ok(())
}

/// The recorded thresholds; the defaults for any not recorded (no poller has run yet) or not a
/// number.
pub async fn read_thresholds(conn: &mut PgConnection) -> Result<Thresholds, sqlx::Error> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT key, value FROM pulse_settings WHERE key IN ($1, $2)")
            .bind(STALE_AFTER)
            .bind(OFFLINE_AFTER)
            .fetch_all(conn)
            .await?;
    Ok(thresholds_from(rows))
}

fn thresholds_from(rows: impl IntoIterator<Item = (String, String)>) -> Thresholds {
    let mut t = Thresholds::default();
    for (key, value) in rows {
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
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, value: &str) -> (String, String) {
        (key.to_owned(), value.to_owned())
    }

    #[test]
    fn recorded_values_replace_the_defaults_and_garbage_is_skipped() {
        let t = thresholds_from([row(STALE_AFTER, "30"), row(OFFLINE_AFTER, "oops")]);
        assert_eq!(t.stale_after, Duration::from_secs(30));
        assert_eq!(t.offline_after, Thresholds::default().offline_after);
        let t = thresholds_from([row(OFFLINE_AFTER, "-5"), row(STALE_AFTER, "inf")]);
        assert_eq!(t.offline_after, Duration::ZERO);
        assert_eq!(t.stale_after, Thresholds::default().stale_after);
    }
}

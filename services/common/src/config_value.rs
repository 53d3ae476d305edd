//! Clap value parsers for the services' settings, so a configuration is checked once, when it
//! is parsed, and carried typed from there on: a whole number within its bounds, a positive
//! number that may have a fraction, a duration (`30s`, `5m`, or whole seconds) within its
//! bounds. Each error names the environment variable, which is how operators set them (or the
//! flag, for a setting that has no variable):
//!
//! ```text
//! #[arg(long, env = "PULSE_DB_POOL_SIZE", default_value = "8",
//!       value_parser = number::<u32>("PULSE_DB_POOL_SIZE", 1..=256))]
//! ```

use std::ops::RangeInclusive;
use std::time::Duration;

use crate::duration;

/// Seconds, for writing bounds in `#[arg]` attributes.
pub const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Milliseconds, for writing bounds in `#[arg]` attributes.
pub const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A whole number in `range`, as `T`.
pub fn number<T>(
    var: &'static str,
    range: RangeInclusive<u64>,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: TryFrom<u64>,
{
    move |raw| {
        let n: u64 = raw
            .trim()
            .parse()
            .map_err(|_| format!("{var} must be a whole number, got {raw:?}"))?;
        if !range.contains(&n) {
            return Err(format!(
                "{var} must be between {} and {}, got {n}",
                range.start(),
                range.end()
            ));
        }
        T::try_from(n).map_err(|_| format!("{var} is too large for this platform: {n}"))
    }
}

/// A number above zero that may have a fraction (a rate, or seconds), as `f64`.
pub fn positive(
    var: &'static str,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |raw| match raw.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err(format!("{var} must be a number above 0, got {raw:?}")),
    }
}

/// A duration between `min` and `max`: `90s`, `15m`, `1h 30m`, or whole seconds.
pub fn duration(
    var: &'static str,
    min: Duration,
    max: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    let within = duration::within(min, max);
    move |raw| within(raw).map_err(|e| format!("{var} {e}"))
}

/// Like [`duration()`], for a variable measured in milliseconds: a bare number is milliseconds.
pub fn millis(
    var: &'static str,
    min: Duration,
    max: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    let within = duration(var, min, max);
    move |raw| match raw.trim().parse::<u64>() {
        Ok(ms) => within(&format!("{ms}ms")),
        Err(_) => within(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_within_bounds_only() {
        let p = number::<u32>("PULSE_X", 1..=10);
        assert_eq!(p("7"), Ok(7));
        assert_eq!(
            p("0").unwrap_err(),
            "PULSE_X must be between 1 and 10, got 0"
        );
        assert_eq!(
            p("ten").unwrap_err(),
            "PULSE_X must be a whole number, got \"ten\""
        );
        assert!(p("-1").is_err());
        assert!(number::<u8>("PULSE_Y", 0..=1000)("300").is_err());
    }

    #[test]
    fn positive_numbers_may_have_a_fraction() {
        let p = positive("PULSE_RATE");
        assert_eq!(p("2.5"), Ok(2.5));
        assert_eq!(p(" 10 "), Ok(10.0));
        for bad in ["0", "-1", "NaN", "inf", "fast", ""] {
            assert_eq!(
                p(bad).unwrap_err(),
                format!("PULSE_RATE must be a number above 0, got {bad:?}")
            );
        }
    }

    #[test]
    fn durations_name_their_variable() {
        let p = duration("PULSE_T", Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(p("5"), Ok(Duration::from_secs(5)));
        assert_eq!(p("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(
            p("2m").unwrap_err(),
            "PULSE_T must be between 1s and 1m, got 2m"
        );
    }

    #[test]
    fn millis_read_a_bare_number_as_milliseconds() {
        let p = millis("PULSE_MS", Duration::ZERO, Duration::from_secs(10));
        assert_eq!(p("250"), Ok(Duration::from_millis(250)));
        assert_eq!(p("2s"), Ok(Duration::from_secs(2)));
        assert!(
            p("20000")
                .unwrap_err()
                .starts_with("PULSE_MS must be between")
        );
    }
}

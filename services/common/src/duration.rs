//! Durations in configuration: `90s`, `15m`, `24h`, `1h 30m`, or a plain number of seconds.

use std::time::Duration;

/// Parses a configured duration; a bare number is seconds. For clap's `value_parser`.
pub fn parse(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    if let Ok(seconds) = raw.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(raw)
        .map_err(|e| format!("{e}; write a duration such as 90s, 15m or 24h, or whole seconds"))
}

/// A clap value parser for a duration between `min` and `max` (inclusive), so a configuration
/// is checked once, when it is parsed, and carried as a [`Duration`] from there on:
/// `#[arg(long, env = "PULSE_PING_SECONDS", default_value = "25", value_parser = within(ONE_SECOND, HOUR))]`.
pub fn within(
    min: Duration,
    max: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |raw| {
        let d = parse(raw)?;
        if d < min || d > max {
            return Err(format!(
                "must be between {} and {}, got {}",
                format(min),
                format(max),
                format(d)
            ));
        }
        Ok(d)
    }
}

/// Formats a duration the way [`parse`] reads it back.
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_units_and_plain_seconds() {
        assert_eq!(parse("86400"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse(" 90s "), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse("soon").is_err());
        assert!(parse("-5").is_err());
        assert!(parse("").is_err());
        assert_eq!(
            parse(&format(Duration::from_secs(5_400))),
            Ok(Duration::from_secs(5_400))
        );
    }

    #[test]
    fn within_refuses_what_is_out_of_bounds() {
        let p = within(Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(p("30"), Ok(Duration::from_secs(30)));
        assert_eq!(p("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(p("0").unwrap_err(), "must be between 1s and 1m, got 0s");
        assert!(p("61s").is_err());
        assert!(p("later").is_err());
    }
}

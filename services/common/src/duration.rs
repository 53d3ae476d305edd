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
}

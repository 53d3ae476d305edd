//! Clap value parsers for the services' settings, so a configuration is checked once, when it
//! is parsed, and carried typed from there on: a whole number within its bounds, a positive
//! number that may have a fraction, a duration (`30s`, `5m`, or whole seconds) within its
//! bounds, a PEM file of certificates or of a private key that can be read. Each error names
//! the environment variable, which is how operators set them (or the flag, for a setting that
//! has no variable); the parser reads that name from the setting itself, so it is written
//! once:
//!
//! ```text
//! #[arg(long, env = "PULSE_DB_POOL_SIZE", default_value = "8",
//!       value_parser = number::<u32>(1..=256))]
//! ```

use std::ffi::OsStr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::{Arg, Command};

use crate::duration;

/// Seconds, for writing bounds in `#[arg]` attributes.
pub const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Milliseconds, for writing bounds in `#[arg]` attributes.
pub const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A value parser that checks a setting's raw value with `check(name, raw)`, where `name` is
/// the setting's environment variable (or its flag), for the error to name.
#[derive(Clone)]
pub struct Setting<F>(F);

impl<T, F> TypedValueParser for Setting<F>
where
    F: Fn(&str, &str) -> Result<T, String> + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(&self, cmd: &Command, arg: Option<&Arg>, value: &OsStr) -> Result<T, clap::Error> {
        let name = name_of(arg);
        let check = self.0.clone();
        // Clap's own closure parser turns the message into its "invalid value" error.
        (move |raw: &str| check(&name, raw)).parse_ref(cmd, arg, value)
    }
}

/// How an operator knows a setting: its environment variable, else its flag.
fn name_of(arg: Option<&Arg>) -> String {
    let Some(arg) = arg else {
        return "the value".to_owned();
    };
    arg.get_env()
        .map(|env| env.to_string_lossy().into_owned())
        .or_else(|| arg.get_long().map(|long| format!("--{long}")))
        .unwrap_or_else(|| arg.get_id().to_string())
}

/// A whole number in `range`, as `T`.
pub fn number<T>(
    range: RangeInclusive<u64>,
) -> Setting<impl Fn(&str, &str) -> Result<T, String> + Clone + Send + Sync + 'static>
where
    T: TryFrom<u64>,
{
    Setting(move |var: &str, raw: &str| {
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
    })
}

/// A number above zero that may have a fraction (a rate, or seconds), as `f64`.
pub fn positive()
-> Setting<impl Fn(&str, &str) -> Result<f64, String> + Clone + Send + Sync + 'static> {
    Setting(|var: &str, raw: &str| match raw.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err(format!("{var} must be a number above 0, got {raw:?}")),
    })
}

/// A duration between `min` and `max`: `90s`, `15m`, `1h 30m`, or whole seconds.
pub fn duration(
    min: Duration,
    max: Duration,
) -> Setting<impl Fn(&str, &str) -> Result<Duration, String> + Clone + Send + Sync + 'static> {
    let within = duration::within(min, max);
    Setting(move |var: &str, raw: &str| within(raw).map_err(|e| format!("{var} {e}")))
}

/// Like [`duration()`], for a variable measured in milliseconds: a bare number is milliseconds.
pub fn millis(
    min: Duration,
    max: Duration,
) -> Setting<impl Fn(&str, &str) -> Result<Duration, String> + Clone + Send + Sync + 'static> {
    let Setting(within) = duration(min, max);
    Setting(
        move |var: &str, raw: &str| match raw.trim().parse::<u64>() {
            Ok(ms) => within(var, &format!("{ms}ms")),
            Err(_) => within(var, raw),
        },
    )
}

/// A PEM file holding at least one certificate (a CA bundle, or a certificate and its chain),
/// read when the setting is parsed so a missing or unreadable file stops the service at
/// start, not at its first connection. The path is kept: the file is read again where it is
/// used, so a certificate renewed in place is taken up.
pub fn certificates_file()
-> Setting<impl Fn(&str, &str) -> Result<PathBuf, String> + Clone + Send + Sync + 'static> {
    Setting(|var: &str, raw: &str| {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject as _;
        let path = PathBuf::from(raw);
        let certificates = CertificateDer::pem_file_iter(&path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{var}: cannot read certificates from {raw:?}: {e}"))?;
        if certificates.is_empty() {
            return Err(format!("{var}: no PEM certificate in {raw:?}"));
        }
        Ok(path)
    })
}

/// A PEM file holding a private key (PKCS#8, PKCS#1 or SEC1), checked as
/// [`certificates_file`] is.
pub fn private_key_file()
-> Setting<impl Fn(&str, &str) -> Result<PathBuf, String> + Clone + Send + Sync + 'static> {
    Setting(|var: &str, raw: &str| {
        use rustls_pki_types::PrivateKeyDer;
        use rustls_pki_types::pem::PemObject as _;
        let path = PathBuf::from(raw);
        PrivateKeyDer::from_pem_file(&path)
            .map_err(|e| format!("{var}: cannot read a private key from {raw:?}: {e}"))?;
        Ok(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    impl<F> Setting<F> {
        /// Checks `raw` as the setting `name`.
        fn check<T>(&self, name: &str, raw: &str) -> Result<T, String>
        where
            F: Fn(&str, &str) -> Result<T, String>,
        {
            (self.0)(name, raw)
        }
    }

    #[test]
    fn errors_name_the_variable_or_else_the_flag() {
        let cmd = Command::new("svc")
            .arg(
                Arg::new("pool")
                    .long("pool")
                    .env("PULSE_POOL")
                    .value_parser(number::<u32>(1..=8)),
            )
            .arg(Arg::new("rate").long("rate").value_parser(positive()));
        let error = |args: [&str; 3]| {
            cmd.clone()
                .try_get_matches_from(args)
                .unwrap_err()
                .to_string()
        };
        let err = error(["svc", "--pool", "9"]);
        assert!(
            err.contains("PULSE_POOL must be between 1 and 8, got 9"),
            "{err}"
        );
        let err = error(["svc", "--rate", "0"]);
        assert!(
            err.contains("--rate must be a number above 0, got \"0\""),
            "{err}"
        );
        let ok = cmd.try_get_matches_from(["svc", "--pool", "8"]).unwrap();
        assert_eq!(ok.get_one::<u32>("pool"), Some(&8));
    }

    #[test]
    fn numbers_within_bounds_only() {
        let p = number::<u32>(1..=10);
        assert_eq!(p.check("PULSE_X", "7"), Ok(7));
        assert_eq!(
            p.check("PULSE_X", "0").unwrap_err(),
            "PULSE_X must be between 1 and 10, got 0"
        );
        assert_eq!(
            p.check("PULSE_X", "ten").unwrap_err(),
            "PULSE_X must be a whole number, got \"ten\""
        );
        assert!(p.check("PULSE_X", "-1").is_err());
        assert!(number::<u8>(0..=1000).check("PULSE_Y", "300").is_err());
    }

    #[test]
    fn positive_numbers_may_have_a_fraction() {
        let p = positive();
        assert_eq!(p.check("PULSE_RATE", "2.5"), Ok(2.5));
        assert_eq!(p.check("PULSE_RATE", " 10 "), Ok(10.0));
        for bad in ["0", "-1", "NaN", "inf", "fast", ""] {
            assert_eq!(
                p.check("PULSE_RATE", bad).unwrap_err(),
                format!("PULSE_RATE must be a number above 0, got {bad:?}")
            );
        }
    }

    #[test]
    fn durations_name_their_variable() {
        let p = duration(Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(p.check("PULSE_T", "5"), Ok(Duration::from_secs(5)));
        assert_eq!(p.check("PULSE_T", "2s"), Ok(Duration::from_secs(2)));
        assert_eq!(
            p.check("PULSE_T", "2m").unwrap_err(),
            "PULSE_T must be between 1s and 1m, got 2m"
        );
    }

    #[test]
    fn millis_read_a_bare_number_as_milliseconds() {
        let p = millis(Duration::ZERO, Duration::from_secs(10));
        assert_eq!(p.check("PULSE_MS", "250"), Ok(Duration::from_millis(250)));
        assert_eq!(p.check("PULSE_MS", "2s"), Ok(Duration::from_secs(2)));
        assert!(
            p.check("PULSE_MS", "20000")
                .unwrap_err()
                .starts_with("PULSE_MS must be between")
        );
    }
}

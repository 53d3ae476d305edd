//! The simulator's command line: what to simulate and how fast. Every setting has an
//! environment variable (`PULSE_SIM_*`, `PULSE_DEMO_PASSWORD`; `--seed-only` is a flag only),
//! and a value that cannot work is refused at start with the variable to fix: bounds as the
//! values are parsed (`pulse_common::config_value`), the rest by [`SimulateArgs::validate`].

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{anyhow, bail};
use pulse_common::config_value::{duration, number, secs};

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
    #[arg(long, env = "PULSE_SIM_DEVICES", default_value_t = 300,
          value_parser = number::<u32>(1..=100_000))]
    pub devices: u32,

    /// Sites per tenant; devices are spread over them round-robin.
    #[arg(long, env = "PULSE_SIM_SITES", default_value_t = 6,
          value_parser = number::<u32>(1..=1_000))]
    pub sites: u32,

    /// Milliseconds between two telemetry writes.
    #[arg(long, env = "PULSE_SIM_INTERVAL_MS", default_value_t = 1000,
          value_parser = number::<u64>(50..=60_000))]
    pub interval_ms: u64,

    /// Password of every demo user (used only when a user is created).
    #[arg(
        long,
        env = "PULSE_DEMO_PASSWORD",
        default_value = DEFAULT_PASSWORD,
        hide_env_values = true
    )]
    pub password: String,

    /// How long the demo tenants' readings are kept (`1h`, `90m`, or whole seconds); older
    /// ones are deleted every minute, so a demo left running does not fill the disk (about
    /// 12 GB a day at the defaults). `0` keeps every reading.
    #[arg(long = "keep-readings", env = "PULSE_SIM_KEEP_READINGS", default_value = "1h",
          value_parser = duration(Duration::ZERO, secs(366 * 86_400)))]
    pub keep_readings: Duration,

    /// Create the demo tenants, users and devices, then exit.
    #[arg(long)]
    pub seed_only: bool,
}

pub(crate) const DEFAULT_PASSWORD: &str = "pulse-demo";

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
        if self.sites > self.devices {
            bail!(
                "PULSE_SIM_SITES ({}) must not exceed PULSE_SIM_DEVICES ({})",
                self.sites,
                self.devices
            );
        }
        if self.password.is_empty() {
            bail!("PULSE_DEMO_PASSWORD is empty");
        }
        Ok(())
    }

    pub(crate) fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
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
            keep_readings: Duration::from_secs(3600),
            seed_only: false,
        }
    }

    fn error_of(args: &SimulateArgs) -> String {
        format!("{:#}", args.validate().unwrap_err())
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimulateArgs,
    }

    fn parse(args: &[&str]) -> Result<SimulateArgs, String> {
        use clap::Parser;
        let argv = std::iter::once("x").chain(args.iter().copied());
        Cli::try_parse_from(argv)
            .map(|cli| cli.sim)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_valid() {
        args().validate().unwrap();
        parse(&[]).unwrap().validate().unwrap();
    }

    #[test]
    fn clap_reads_flags_and_splits_tenants() {
        let sim = parse(&[
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
        assert_eq!(sim.tenants, ["a", "b", "c"]);
        assert_eq!((sim.devices, sim.sites, sim.interval_ms), (12, 3, 250));
        assert!(sim.seed_only);
    }

    #[test]
    fn the_readings_window_is_a_duration_and_0_keeps_everything() {
        assert_eq!(parse(&[]).unwrap().keep_readings, Duration::from_secs(3600));
        let sim = parse(&["--keep-readings", "90m"]).unwrap();
        assert_eq!(sim.keep_readings, Duration::from_secs(5400));
        assert_eq!(
            parse(&["--keep-readings", "0"]).unwrap().keep_readings,
            Duration::ZERO
        );
        let message = parse(&["--keep-readings", "soon"]).unwrap_err();
        assert!(message.contains("PULSE_SIM_KEEP_READINGS"), "{message}");
    }

    #[test]
    fn bounds_are_checked_as_flags_are_parsed_naming_the_variable() {
        for (flag, value, expected) in [
            (
                "--devices",
                "0",
                "PULSE_SIM_DEVICES must be between 1 and 100000, got 0",
            ),
            (
                "--devices",
                "100001",
                "PULSE_SIM_DEVICES must be between 1 and 100000, got 100001",
            ),
            (
                "--sites",
                "0",
                "PULSE_SIM_SITES must be between 1 and 1000, got 0",
            ),
            (
                "--sites",
                "1001",
                "PULSE_SIM_SITES must be between 1 and 1000, got 1001",
            ),
            (
                "--interval-ms",
                "49",
                "PULSE_SIM_INTERVAL_MS must be between 50 and 60000, got 49",
            ),
            (
                "--interval-ms",
                "60001",
                "PULSE_SIM_INTERVAL_MS must be between 50 and 60000, got 60001",
            ),
        ] {
            let message = parse(&[flag, value]).unwrap_err();
            assert!(
                message.contains(expected),
                "{flag} {value}: expected {expected:?} in {message:?}"
            );
        }
        // The edges themselves are accepted.
        for edges in [
            ["--devices", "1", "--sites", "1", "--interval-ms", "50"],
            [
                "--devices",
                "100000",
                "--sites",
                "1000",
                "--interval-ms",
                "60000",
            ],
        ] {
            parse(&edges).unwrap().validate().unwrap();
        }
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
                    devices: 5,
                    sites: 6,
                    ..args()
                },
                "PULSE_SIM_SITES (6) must not exceed PULSE_SIM_DEVICES (5)",
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
        // The longest tenant id, and every character a tenant id may hold, are accepted.
        SimulateArgs {
            tenants: vec!["x".repeat(64), "A_b-9".into()],
            ..args()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn help_never_prints_a_secret_from_the_environment() {
        let shown = pulse_test_support::secrets_shown_in_help::<SimulateArgs>();
        assert!(shown.is_empty(), "--help prints the values of {shown:?}");
    }
}

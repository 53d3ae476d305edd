//! The simulator's command line: what to simulate and how fast. Every flag has an environment
//! variable (`PULSE_SIM_*`, `PULSE_DEMO_PASSWORD`), and a value that cannot work is refused at
//! start with the variable to fix.

use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::time::Duration;

use anyhow::{anyhow, bail};

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
    #[arg(long, env = "PULSE_SIM_DEVICES", default_value_t = 300)]
    pub devices: u32,

    /// Sites per tenant; devices are spread over them round-robin.
    #[arg(long, env = "PULSE_SIM_SITES", default_value_t = 6)]
    pub sites: u32,

    /// Milliseconds between two telemetry writes.
    #[arg(long, env = "PULSE_SIM_INTERVAL_MS", default_value_t = 1000)]
    pub interval_ms: u64,

    /// Password of every demo user (used only when a user is created).
    #[arg(
        long,
        env = "PULSE_DEMO_PASSWORD",
        default_value = DEFAULT_PASSWORD,
        hide_env_values = true
    )]
    pub password: String,

    /// Create the demo tenants, users and devices, then exit.
    #[arg(long)]
    pub seed_only: bool,
}

pub(crate) const DEFAULT_PASSWORD: &str = "pulse-demo";
const MAX_DEVICES: u32 = 100_000;
const MAX_SITES: u32 = 1_000;
const INTERVAL_MS: RangeInclusive<u64> = 50..=60_000;

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
        in_range(
            "PULSE_SIM_DEVICES",
            self.devices.into(),
            1..=MAX_DEVICES.into(),
        )?;
        in_range("PULSE_SIM_SITES", self.sites.into(), 1..=MAX_SITES.into())?;
        if self.sites > self.devices {
            bail!(
                "PULSE_SIM_SITES ({}) must not exceed PULSE_SIM_DEVICES ({})",
                self.sites,
                self.devices
            );
        }
        in_range("PULSE_SIM_INTERVAL_MS", self.interval_ms, INTERVAL_MS)?;
        if self.password.is_empty() {
            bail!("PULSE_DEMO_PASSWORD is empty");
        }
        Ok(())
    }

    pub(crate) fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
}

fn in_range(name: &str, value: u64, range: RangeInclusive<u64>) -> anyhow::Result<()> {
    if range.contains(&value) {
        Ok(())
    } else {
        bail!(
            "{name} must be between {} and {}, got {value}",
            range.start(),
            range.end()
        )
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
            seed_only: false,
        }
    }

    fn error_of(args: &SimulateArgs) -> String {
        format!("{:#}", args.validate().unwrap_err())
    }

    #[test]
    fn defaults_are_valid() {
        args().validate().unwrap();
    }

    #[test]
    fn clap_reads_flags_and_splits_tenants() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            sim: SimulateArgs,
        }
        let cli = Cli::try_parse_from([
            "x",
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
        assert_eq!(cli.sim.tenants, ["a", "b", "c"]);
        assert_eq!(
            (cli.sim.devices, cli.sim.sites, cli.sim.interval_ms),
            (12, 3, 250)
        );
        assert!(cli.sim.seed_only);
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
                    devices: 0,
                    ..args()
                },
                "PULSE_SIM_DEVICES must be between 1 and 100000, got 0",
            ),
            (
                SimulateArgs {
                    devices: 100_001,
                    ..args()
                },
                "PULSE_SIM_DEVICES must be between 1 and 100000, got 100001",
            ),
            (
                SimulateArgs { sites: 0, ..args() },
                "PULSE_SIM_SITES must be between 1 and 1000, got 0",
            ),
            (
                SimulateArgs {
                    sites: 1001,
                    devices: 5000,
                    ..args()
                },
                "PULSE_SIM_SITES must be between 1 and 1000, got 1001",
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
                    interval_ms: 49,
                    ..args()
                },
                "PULSE_SIM_INTERVAL_MS must be between 50 and 60000, got 49",
            ),
            (
                SimulateArgs {
                    interval_ms: 60_001,
                    ..args()
                },
                "PULSE_SIM_INTERVAL_MS must be between 50 and 60000, got 60001",
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
        // The edges themselves are accepted.
        for ok in [
            SimulateArgs {
                devices: 1,
                sites: 1,
                interval_ms: 50,
                ..args()
            },
            SimulateArgs {
                devices: 100_000,
                sites: 1000,
                interval_ms: 60_000,
                ..args()
            },
            SimulateArgs {
                tenants: vec!["x".repeat(64), "A_b-9".into()],
                ..args()
            },
        ] {
            ok.validate().unwrap();
        }
    }
}

//! When a device reports: most always do; a few flaky ones go quiet for minutes at a time, so
//! STALE and OFFLINE devices show up; an offline alert silences the device it names.

use std::ops::RangeInclusive;
use std::time::Duration;

use rand::Rng;

/// How long a flaky device stays quiet: always past STALE (60 s), sometimes past OFFLINE (600 s).
const OUTAGE: RangeInclusive<Duration> = Duration::from_secs(60)..=Duration::from_secs(15 * 60);
/// How long a flaky device reports between two outages.
const UPTIME: RangeInclusive<Duration> = Duration::from_secs(60)..=Duration::from_secs(10 * 60);

/// When a device reports. A steady device always does unless an offline alert silenced it; a
/// flaky one also goes quiet for [`OUTAGE`] after every [`UPTIME`]. Times are measured from the
/// start of the simulation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Presence {
    /// The current or last outage: `quiet_from..quiet_until`.
    pub(crate) quiet_from: Duration,
    pub(crate) quiet_until: Duration,
    /// When the next outage of a flaky device begins; `None` for a steady device.
    pub(crate) next_outage: Option<Duration>,
}

impl Presence {
    pub(crate) fn steady() -> Self {
        Self {
            quiet_from: Duration::ZERO,
            quiet_until: Duration::ZERO,
            next_outage: None,
        }
    }

    /// A flaky device, half the time starting in an outage so a fresh demo shows quiet devices.
    pub(crate) fn flaky(rng: &mut impl Rng) -> Self {
        if rng.random_bool(0.5) {
            let quiet_until = rng.random_range(OUTAGE);
            Self {
                quiet_from: Duration::ZERO,
                quiet_until,
                next_outage: Some(quiet_until + rng.random_range(UPTIME)),
            }
        } else {
            Self {
                quiet_from: Duration::ZERO,
                quiet_until: Duration::ZERO,
                next_outage: Some(rng.random_range(Duration::ZERO..=*UPTIME.end())),
            }
        }
    }

    pub(crate) fn is_quiet(&self, now: Duration) -> bool {
        self.quiet_from <= now && now < self.quiet_until
    }

    /// How long the device has been quiet, if it is.
    pub(crate) fn quiet_for(&self, now: Duration) -> Option<Duration> {
        self.is_quiet(now)
            .then(|| now.saturating_sub(self.quiet_from))
    }

    /// Advances the schedule to `now`; whether the device reports at `now`.
    pub(crate) fn reports(&mut self, now: Duration, rng: &mut impl Rng) -> bool {
        if let Some(next) = self.next_outage
            && now >= next
            && !self.is_quiet(now)
        {
            self.quiet_from = now;
            self.quiet_until = now + rng.random_range(OUTAGE);
            self.next_outage = Some(self.quiet_until + rng.random_range(UPTIME));
        }
        !self.is_quiet(now)
    }

    /// Keeps the device quiet from `now` for at least `len`.
    pub(crate) fn silence(&mut self, now: Duration, len: Duration) {
        if !self.is_quiet(now) {
            self.quiet_from = now;
        }
        self.quiet_until = self.quiet_until.max(now + len);
        if let Some(next) = &mut self.next_outage {
            *next = (*next).max(self.quiet_until + *UPTIME.start());
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::testing::rng;

    #[test]
    fn flaky_devices_go_quiet_for_one_to_fifteen_minutes() {
        let mut rng = rng();
        for _ in 0..50 {
            let mut presence = Presence::flaky(&mut rng);
            let mut quiet_since: Option<u64> = None;
            let mut outages = Vec::new();
            for second in 0..(6 * 3600) {
                let now = Duration::from_secs(second);
                let reports = presence.reports(now, &mut rng);
                match (reports, quiet_since) {
                    (false, None) => quiet_since = Some(second),
                    (true, Some(since)) => {
                        // An outage under way at the start may have begun before it.
                        if since > 0 {
                            outages.push(second - since);
                        }
                        quiet_since = None;
                    }
                    _ => {}
                }
            }
            assert!(
                !outages.is_empty(),
                "a flaky device never went quiet in 6 h"
            );
            for len in outages {
                assert!((60..=15 * 60 + 1).contains(&len), "outage of {len} s");
            }
        }
        let mut steady = Presence::steady();
        assert!((0..100_000).all(|s| steady.reports(Duration::from_secs(s), &mut rng)));
    }

    #[test]
    fn silencing_keeps_a_device_quiet() {
        let mut rng = rng();
        let mut presence = Presence::steady();
        let t0 = Duration::from_secs(100);
        presence.silence(t0, Duration::from_secs(700));
        assert!(!presence.reports(t0, &mut rng));
        assert!(!presence.reports(t0 + Duration::from_secs(699), &mut rng));
        assert_eq!(
            presence.quiet_for(t0 + Duration::from_secs(650)),
            Some(Duration::from_secs(650))
        );
        assert!(presence.reports(t0 + Duration::from_secs(700), &mut rng));
    }
}

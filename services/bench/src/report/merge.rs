//! The merge of several shards' reports of one run into one.
//!
//! Each merged part of a report states, in one table, the rule by which another shard's value
//! of each of its fields is taken into ours. The table takes the other value apart without a
//! rest pattern, so a field added without a rule does not compile, rather than keeping the
//! first shard's value unnoticed.
//!
//! What the rules follow from: each shard runs its own share of the clients, so their counts
//! and latency samples add up; shard 0 alone publishes (or writes the events) and measures the
//! gateways, and releases what it published to the others, so the publisher's figures are the
//! same in every shard's report (taken once, never added); the gateways' figures were measured
//! once too, whether copied to every shard or in the leader's report only (the first known one
//! is taken).

use std::collections::BTreeMap;
use std::ops::AddAssign;

use super::{ChurnStats, ConnectStats, EventsStats, Report, RestartStep, StageReport, StormStats};
use crate::latency::Latency;

/// Failures kept verbatim in a merged report, as in one process's.
const SAMPLES: usize = 10;

impl Report {
    /// Combines shards' reports of the same run, in any order.
    pub fn merge(reports: Vec<Report>) -> Option<Report> {
        let mut reports = reports.into_iter();
        let mut out = reports.next()?;
        for r in reports {
            out.absorb(r);
        }
        out.shards.sort_unstable();
        out.finish();
        Some(out)
    }
}

/// A part of a report that takes another shard's figures of the same part into its own.
trait Absorb {
    fn absorb(&mut self, other: Self);
}

/// Implements [`Absorb`] from a table of `rule: field, ...;` rows per struct, where `rule` is
/// a function `fn(&mut T, T)` below. A field left out of its struct's table fails to compile
/// with "pattern requires `..`".
macro_rules! absorb_by_rules {
    ($($ty:ident { $($rule:ident: $($field:ident),+;)+ })+) => {$(
        impl Absorb for $ty {
            fn absorb(&mut self, other: Self) {
                let $ty { $($($field),+),+ } = other;
                $($($rule(&mut self.$field, $field);)+)+
            }
        }
    )+};
}

absorb_by_rules! {
    Report {
        // The run's description: the first shard's.
        keep: scenario, run_id, started_at, command, load_average, settings;
        extend: shards;
        part: connections;
        by_stage: stages;
        either: churn, storm, events;
        first: gateway;
        add: bench_cpu_seconds;
        add_each: errors;
        samples: error_samples;
    }
    ConnectStats {
        add: attempted, established, failed, held;
        max: setup_seconds;
        histogram: setup_latency;
        derived: per_second;
    }
    StageReport {
        // What the stages were matched by.
        keep: stage;
        add: expected, received, duplicated, missing, merged, lost, behind;
        histogram: latency;
        // The publisher's, the same in every shard.
        max: msgs_per_second, published, seconds;
        // The gateways'.
        first: gateway_conflated, gateway_cpu_seconds, gateway_system_seconds, gateway_rss_bytes;
        first: gateway_fanout_p50_ms, gateway_fanout_p99_ms;
        derived: deliveries_per_second, deliveries_per_gateway_cpu_second;
    }
    ChurnStats {
        add: cycles, completed, failed;
        max: seconds;
        histogram: setup_latency;
        // The gateways'.
        first: after, leak_free, rss_warm_bytes, rss_end_bytes;
        derived: cycles_per_second;
    }
    StormStats {
        add: clients, reconnected, failed;
        max: seconds_to_all;
        histogram: reconnect_latency;
        derived: reconnects_per_second;
    }
    EventsStats {
        // What was written and when the faults came: the same in every shard.
        keep: subject;
        max: rate, last_seq;
        first: killed_pid, killed_at_seconds;
        // The outbox's and the relay's: in the leader's report only, zero in the others'.
        add: inserted, insert_failed, relayed;
        max: insert_seconds, relay_seconds;
        histogram: insert_latency, relay_latency;
        first: poller_relayed;
        // The clients'.
        add: lost, resumed, resume_failed, lost_drained, resets, behind;
        histogram: lost_latency, resubscribe_latency, resume_latency, away_latency;
        histogram: caught_up_latency;
        in_step: restarts;
        derived: inserted_per_second, relayed_per_second;
    }
    RestartStep {
        // The step itself: the same in every shard.
        keep: pid, gateway;
        max: signalled_at_seconds, exited_after_seconds, ready_after_seconds;
        // Its clients.
        add: lost, resumed;
        max: seconds_to_all_resumed;
    }
}

/// Counts of parallel shards: each counted its own clients.
fn add<T: AddAssign>(ours: &mut T, theirs: T) {
    *ours += theirs;
}

/// Durations of shards that ran side by side, and figures every shard reports alike (where
/// the max also comes through a shard that lacks the figure and says 0).
fn max<T: PartialOrd>(ours: &mut T, theirs: T) {
    if theirs > *ours {
        *ours = theirs;
    }
}

/// Figures measured once, by the shard that measured the gateways: the first one known.
fn first<T>(ours: &mut Option<T>, theirs: Option<T>) {
    if ours.is_none() {
        *ours = theirs;
    }
}

/// Figures the same in every shard that cannot be compared: the first shard's.
fn keep<T>(_ours: &mut T, _theirs: T) {}

/// Rates: [`Report::finish`] computes them again from the merged figures.
fn derived<T>(_ours: &mut T, _theirs: T) {}

/// Latencies: every shard's samples.
fn histogram(ours: &mut Latency, theirs: Latency) {
    *ours = ours.merge(&theirs);
}

/// A part merged by its own rules.
fn part<T: Absorb>(ours: &mut T, theirs: T) {
    ours.absorb(theirs);
}

/// A part some shards may not have: merged when both have it, else whichever has.
fn either<T: Absorb>(ours: &mut Option<T>, theirs: Option<T>) {
    match ours {
        Some(ours) => {
            if let Some(theirs) = theirs {
                ours.absorb(theirs);
            }
        }
        None => *ours = theirs,
    }
}

/// Parts each shard has in the same order: merged one by one, any beyond ours added.
fn in_step<T: Absorb>(ours: &mut Vec<T>, theirs: Vec<T>) {
    let mut theirs = theirs.into_iter();
    for (ours, theirs) in ours.iter_mut().zip(theirs.by_ref()) {
        ours.absorb(theirs);
    }
    ours.extend(theirs);
}

/// Stages merged by number; one only another shard reached is added.
fn by_stage(ours: &mut Vec<StageReport>, theirs: Vec<StageReport>) {
    for s in theirs {
        match ours.iter_mut().find(|o| o.stage == s.stage) {
            Some(o) => o.absorb(s),
            None => ours.push(s),
        }
    }
}

fn extend<T>(ours: &mut Vec<T>, theirs: Vec<T>) {
    ours.extend(theirs);
}

fn add_each(ours: &mut BTreeMap<String, u64>, theirs: BTreeMap<String, u64>) {
    for (kind, n) in theirs {
        *ours.entry(kind).or_default() += n;
    }
}

/// The first few failures of all shards.
fn samples(ours: &mut Vec<String>, theirs: Vec<String>) {
    ours.extend(theirs);
    ours.truncate(SAMPLES);
}

//! The process's own resource use, read from `/proc` at every scrape under the names every
//! Prometheus client library uses (`process_*`), so dashboards and alert rules written for
//! them work unchanged: resident memory, open and allowed file descriptors, CPU time, start
//! time. On a system without `/proc` the metrics are simply absent.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

/// Adds the `process_*` metrics to `registry` (at its root, without the service's prefix).
pub fn register(registry: &mut Registry) {
    registry.register_collector(Box::new(ProcessCollector));
}

#[derive(Debug)]
struct ProcessCollector;

/// One reading of `/proc/self`.
#[derive(Debug, Default, PartialEq)]
struct Reading {
    resident_bytes: Option<u64>,
    virtual_bytes: Option<u64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
    cpu_seconds: Option<f64>,
    start_time_seconds: Option<f64>,
}

impl Reading {
    fn take() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let status = read("/proc/self/status").unwrap_or_default();
        let limits = read("/proc/self/limits").unwrap_or_default();
        let stat = read("/proc/self/stat").unwrap_or_default();
        let boot = read("/proc/stat").unwrap_or_default();
        let ticks = clock_ticks();
        let (cpu_ticks, start_ticks) = parse_stat(&stat).unzip();
        Reading {
            resident_bytes: status_kib(&status, "VmRSS:").map(|k| k * 1024),
            virtual_bytes: status_kib(&status, "VmSize:").map(|k| k * 1024),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as u64),
            max_fds: max_open_files(&limits),
            cpu_seconds: cpu_ticks.map(|t| t as f64 / ticks),
            start_time_seconds: start_ticks
                .zip(boot_time(&boot))
                .map(|(t, boot)| boot as f64 + t as f64 / ticks),
        }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let r = Reading::take();
        let gauges: [(&str, &str, Option<Unit>, Option<f64>); 5] = [
            (
                "process_resident_memory",
                "Resident memory size",
                Some(Unit::Bytes),
                r.resident_bytes.map(|v| v as f64),
            ),
            (
                "process_virtual_memory",
                "Virtual memory size",
                Some(Unit::Bytes),
                r.virtual_bytes.map(|v| v as f64),
            ),
            (
                "process_open_fds",
                "Open file descriptors",
                None,
                r.open_fds.map(|v| v as f64),
            ),
            (
                "process_max_fds",
                "Most file descriptors the process may open",
                None,
                r.max_fds.map(|v| v as f64),
            ),
            (
                "process_start_time",
                "Start time of the process since the Unix epoch",
                Some(Unit::Seconds),
                r.start_time_seconds,
            ),
        ];
        for (name, help, unit, value) in gauges {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                let metric =
                    encoder.encode_descriptor(name, help, unit.as_ref(), gauge.metric_type())?;
                gauge.encode(metric)?;
            }
        }
        if let Some(cpu) = r.cpu_seconds {
            let counter = ConstCounter::new(cpu);
            let metric = encoder.encode_descriptor(
                "process_cpu",
                "User and system CPU time spent",
                Some(&Unit::Seconds),
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

/// A `VmRSS:`-style line of `/proc/self/status`, in KiB.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The soft limit of "Max open files" in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// (utime + stime, starttime) from `/proc/self/stat`, in clock ticks. The command name (field
/// 2) may hold spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime 15, starttime 22.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some((field(14)? + field(15)?, field(22)?))
}

/// Boot time, seconds since the epoch, from `/proc/stat`.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// Clock ticks per second, from the kernel's auxiliary vector (`AT_CLKTCK`); 100, the value
/// on every mainstream Linux, when it cannot be read.
fn clock_ticks() -> f64 {
    const AT_CLKTCK: u64 = 17;
    std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|auxv| {
            auxv.chunks_exact(16).find_map(|pair| {
                let (key, value) = pair.split_at(8);
                let key = u64::from_ne_bytes(key.try_into().ok()?);
                let value = u64::from_ne_bytes(value.try_into().ok()?);
                (key == AT_CLKTCK && value > 0).then_some(value as f64)
            })
        })
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_parsed_field_by_field() {
        let status = "Name:\tpulse\nVmSize:\t  2048 kB\nVmRSS:\t   512 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(512));
        assert_eq!(status_kib(status, "VmSize:"), Some(2048));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            20000                20000                files\n";
        assert_eq!(max_open_files(limits), Some(20000));
        // A command name with spaces and a parenthesis does not shift the fields.
        let stat =
            "42 (pulse (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 4 0 1234 1000 100";
        assert_eq!(parse_stat(stat), Some((10, 1234)));
        assert_eq!(
            boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn clock_ticks_are_read_from_the_kernel() {
        let ticks = clock_ticks();
        assert!((10.0..=10_000.0).contains(&ticks), "{ticks}");
    }

    #[test]
    fn this_process_is_read() {
        let r = Reading::take();
        if std::path::Path::new("/proc/self/status").exists() {
            assert!(r.resident_bytes.is_some_and(|b| b > 0), "{r:?}");
            assert!(r.open_fds.is_some_and(|n| n > 0), "{r:?}");
            assert!(
                r.max_fds.is_some_and(|n| n >= r.open_fds.unwrap_or(0)),
                "{r:?}"
            );
            assert!(r.start_time_seconds.is_some(), "{r:?}");
        }
    }
}

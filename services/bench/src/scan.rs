//! Reads the bench fields out of a frame without parsing it as JSON: a substring search for
//! each key and a run of digits after it. Frames the bench did not publish (gateway replies,
//! anything else) have no `bench_sent_ns` and come back as `None`.

use memchr::memmem::Finder;

/// What the bench needs from one of its own messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchFields {
    /// `Pulse-Seq` / `seq` of the message, per subject.
    pub seq: u64,
    /// Publisher's wall clock at publish, nanoseconds since the Unix epoch.
    pub sent_ns: u64,
    /// Stage of the run (sweep stages); 0 otherwise.
    pub stage: u32,
    /// Index of the device for telemetry messages (`dev-<n>`), 0 for alerts.
    pub device: u32,
}

/// Precompiled searchers; build once per process and share.
pub struct Scanner {
    sent: Finder<'static>,
    seq: Finder<'static>,
    stage: Finder<'static>,
    device: Finder<'static>,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

fn digits(text: &[u8], from: usize) -> Option<u64> {
    let rest = text.get(from..)?;
    let end = rest
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    if end == 0 || end > 20 {
        return None;
    }
    rest[..end].iter().try_fold(0u64, |n, b| {
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// The whole number right after `key` in `text` (`"seq":` in `{"seq":41}` gives 41), if any.
pub fn number_after(text: &str, key: &str) -> Option<u64> {
    let at = memchr::memmem::find(text.as_bytes(), key.as_bytes())?;
    digits(text.as_bytes(), at + key.len())
}

impl Scanner {
    pub fn new() -> Self {
        Self {
            sent: Finder::new(br#""bench_sent_ns":"#).into_owned(),
            seq: Finder::new(br#""seq":"#).into_owned(),
            stage: Finder::new(br#""bench_stage":"#).into_owned(),
            device: Finder::new(br#""device_id":"dev-"#).into_owned(),
        }
    }

    fn field(&self, finder: &Finder<'_>, text: &[u8]) -> Option<u64> {
        let at = finder.find(text)?;
        digits(text, at + finder.needle().len())
    }

    /// The bench fields of `text`, or `None` when it is not a bench message.
    pub fn scan(&self, text: &str) -> Option<BenchFields> {
        let bytes = text.as_bytes();
        let sent_ns = self.field(&self.sent, bytes)?;
        let seq = self.field(&self.seq, bytes)?;
        let stage = self.field(&self.stage, bytes).unwrap_or(0);
        let device = self.field(&self.device, bytes).unwrap_or(0);
        Some(BenchFields {
            seq,
            sent_ns,
            stage: u32::try_from(stage).ok()?,
            device: u32::try_from(device).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_alerts_and_telemetry_messages() {
        let s = Scanner::new();
        let alerts = r#"{"type":"alerts","tenant_id":"bench-1","seq":42,"bench_stage":3,"bench_sent_ns":1700000000123456789,"alerts":[]}"#;
        assert_eq!(
            s.scan(alerts),
            Some(BenchFields {
                seq: 42,
                sent_ns: 1_700_000_000_123_456_789,
                stage: 3,
                device: 0
            })
        );
        let telemetry = r#"{"type":"telemetry","tenant_id":"b","device_id":"dev-917","seq":7,"bench_stage":0,"bench_sent_ns":5,"data":{}}"#;
        assert_eq!(s.scan(telemetry).map(|f| (f.device, f.seq)), Some((917, 7)));
    }

    #[test]
    fn reads_events_messages_and_acks() {
        let s = Scanner::new();
        let event = r#"{"type":"event","tenant_id":"bench-1","topic":"bench","event":"bench:tick","seq":12,"ts":"2026-12-01T10:00:00Z","payload":{"bench_sent_ns":77,"pad":"xx"}}"#;
        assert_eq!(s.scan(event).map(|f| (f.seq, f.sent_ns)), Some((12, 77)));
        let ack = r#"{"type":"subscribed","channel":"events","topic":"bench","seq":41}"#;
        assert_eq!(number_after(ack, r#""seq":"#), Some(41));
        assert_eq!(
            number_after(r#"{"type":"subscribed","channel":"alerts"}"#, r#""seq":"#),
            None
        );
    }

    #[test]
    fn other_frames_are_not_bench_messages() {
        let s = Scanner::new();
        assert_eq!(s.scan(r#"{"type":"subscribed","channel":"alerts"}"#), None);
        assert_eq!(s.scan(r#"{"type":"pong"}"#), None);
        assert_eq!(s.scan(r#"{"bench_sent_ns":"x","seq":1}"#), None);
        assert_eq!(
            s.scan(r#"{"bench_sent_ns":99999999999999999999999,"seq":1}"#),
            None
        );
        assert_eq!(s.scan(""), None);
    }
}

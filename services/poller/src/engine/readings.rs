//! The telemetry cycle, every `PULSE_TELEMETRY_POLL_MS`: each device's newest reading since
//! the last read goes out, and the read window moves on only once all of them did.

use super::{CycleError, Engine};
use crate::metrics::{Kind, Query};
use crate::publisher::{self, Outgoing};
use crate::telemetry::Version;
use pulse_proto::{DeviceId, StoredTelemetry, Subject, TelemetryData, TenantId, Timestamp};
use std::time::Instant;

impl Engine {
    /// Publishes each device's newest reading since the last read.
    #[tracing::instrument(name = "poll_telemetry", skip_all)]
    pub async fn poll_telemetry(&mut self) -> Result<(), CycleError> {
        let started = Instant::now();
        let batch = self.telemetry.read(&self.pool).await?;
        self.metrics.observe_query(Query::Telemetry, started);
        // A reading of a tenant not loaded yet (its notification late, or lost) reloads the
        // tenants rather than being passed over for good as the window moves on.
        if batch
            .readings
            .iter()
            .any(|r| !self.tenants.contains(&r.tenant))
        {
            self.load_tenants().await?;
        }
        let limit = publisher::payload_limit(&self.js);
        let mut out = Vec::with_capacity(batch.readings.len());
        for r in batch.readings {
            if !self.tenants.contains(&r.tenant) {
                continue;
            }
            let seq = self.seq.next();
            let version = r.version();
            let message = StoredTelemetry {
                kind: Default::default(),
                tenant_id: r.tenant.clone(),
                device_id: r.device.clone(),
                seq,
                data: TelemetryData {
                    timestamp: Timestamp(r.ts),
                    metrics: r.metrics,
                },
            };
            let subject = Subject::Telemetry(r.tenant.clone(), r.device.clone());
            let key = (r.tenant, r.device, version);
            let reading = Outgoing::new(key, subject, seq, &message)?;
            if reading.payload.len() > limit {
                self.skip_oversized(reading, limit);
                continue;
            }
            out.push(reading);
        }
        let expected = out.len();
        let (done, err) = publisher::publish_all(&self.js, out, Some(&mut self.fence)).await;
        let n = done.len() as u64;
        self.metrics.published(Kind::Telemetry, n);
        self.metrics.telemetry_rows.inc_by(n);
        for (tenant, device, version) in done {
            self.telemetry.mark_published(tenant, device, version);
        }
        // Move on only when the whole window went out; otherwise the next read covers it again.
        if err.is_none() && n as usize == expected {
            self.telemetry.advance(batch.next_watermark);
        }
        err.map_or(Ok(()), |e| Err(e.into()))
    }

    /// Passes over a reading too big for the NATS server's `max_payload`, which would otherwise
    /// fail on every read and hold the watermark back for good. It counts as handled, so it is
    /// not read again while it stays in the window; a newer reading of the device goes out.
    fn skip_oversized(&mut self, reading: Outgoing<(TenantId, DeviceId, Version)>, limit: usize) {
        let (tenant, device, version) = reading.key;
        self.metrics.oversized(Kind::Telemetry);
        tracing::warn!(
            %tenant, %device, bytes = reading.payload.len(), limit,
            "telemetry reading too big for the NATS server's max_payload; skipped"
        );
        self.telemetry.mark_published(tenant, device, version);
    }
}

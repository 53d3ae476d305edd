//! Connection caps, per instance and per tenant. A [`Slot`] is held for a connection's life
//! and frees itself on drop, whatever ends the connection.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use pulse_proto::TenantId;

use crate::metrics::{Metrics, TenantLabel};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    #[error("gateway connection limit reached")]
    Instance,
    #[error("tenant connection limit reached")]
    Tenant,
}

#[derive(Clone)]
pub struct Caps {
    inner: Arc<Inner>,
}

struct Inner {
    max_total: usize,
    max_per_tenant: usize,
    counts: Mutex<Counts>,
    metrics: Metrics,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_tenant: HashMap<TenantId, usize>,
}

/// One admitted connection.
pub struct Slot {
    caps: Caps,
    tenant: TenantId,
}

impl Caps {
    pub fn new(max_total: usize, max_per_tenant: usize, metrics: Metrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                max_total,
                max_per_tenant,
                counts: Mutex::new(Counts::default()),
                metrics,
            }),
        }
    }

    /// Whether the instance is full, checked before the upgrade (answered with HTTP 503).
    pub fn instance_full(&self) -> bool {
        self.inner.counts.lock().total >= self.inner.max_total
    }

    pub fn total(&self) -> usize {
        self.inner.counts.lock().total
    }

    pub fn admit(&self, tenant: &TenantId) -> Result<Slot, CapError> {
        let mut counts = self.inner.counts.lock();
        if counts.total >= self.inner.max_total {
            return Err(CapError::Instance);
        }
        let n = counts.per_tenant.entry(tenant.clone()).or_insert(0);
        if *n >= self.inner.max_per_tenant {
            return Err(CapError::Tenant);
        }
        *n += 1;
        counts.total += 1;
        drop(counts);
        self.inner.metrics.connections.inc();
        self.inner
            .metrics
            .tenant_connections
            .get_or_create(&TenantLabel {
                tenant: tenant.to_string(),
            })
            .inc();
        Ok(Slot {
            caps: self.clone(),
            tenant: tenant.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let inner = &self.caps.inner;
        {
            let mut counts = inner.counts.lock();
            counts.total = counts.total.saturating_sub(1);
            if let Some(n) = counts.per_tenant.get_mut(&self.tenant) {
                *n -= 1;
                if *n == 0 {
                    counts.per_tenant.remove(&self.tenant);
                }
            }
        }
        inner.metrics.connections.dec();
        let label = TenantLabel {
            tenant: self.tenant.to_string(),
        };
        inner.metrics.tenant_connections.get_or_create(&label).dec();
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;

    #[test]
    fn caps_per_tenant_and_instance_and_free_on_drop() {
        let metrics = Metrics::register(&mut Registry::default());
        let caps = Caps::new(3, 2, metrics);
        let a = TenantId::parse("a").unwrap();
        let b = TenantId::parse("b").unwrap();
        let a1 = caps.admit(&a).unwrap();
        let _a2 = caps.admit(&a).unwrap();
        assert_eq!(caps.admit(&a).err(), Some(CapError::Tenant));
        let _b1 = caps.admit(&b).unwrap();
        assert!(caps.instance_full());
        assert_eq!(caps.admit(&b).err(), Some(CapError::Instance));
        drop(a1);
        assert_eq!(caps.total(), 2);
        caps.admit(&a).unwrap();
    }
}

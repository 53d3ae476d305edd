//! Connection caps, per instance, per tenant, per user and per client address (an IPv6
//! client's /64: [`subscriber`]). A [`Slot`] is held for a connection's life and frees itself
//! on drop, whatever ends the connection.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use pulse_common::client_addr::subscriber;
use pulse_proto::TenantId;

use crate::metrics::{Metrics, TenantLabel};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    #[error("gateway connection limit reached")]
    Instance,
    #[error("tenant connection limit reached")]
    Tenant,
    #[error("user connection limit reached")]
    User,
    #[error("connection limit reached for this address")]
    Address,
}

/// The limits a [`Caps`] enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub total: usize,
    pub per_tenant: usize,
    pub per_user: usize,
    pub per_address: usize,
}

/// Who a connection is, for the caps.
pub struct Holder<'a> {
    pub tenant: &'a TenantId,
    /// The token's `sub`; empty when it names no user (then only the other caps apply).
    pub user: &'a str,
    pub address: std::net::IpAddr,
}

#[derive(Clone)]
pub struct Caps {
    inner: Arc<Inner>,
}

struct Inner {
    limits: Limits,
    counts: Mutex<Counts>,
    metrics: Metrics,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_tenant: HashMap<TenantId, usize>,
    per_user: HashMap<(TenantId, String), usize>,
    per_address: HashMap<std::net::IpAddr, usize>,
}

/// One admitted connection.
pub struct Slot {
    caps: Caps,
    tenant: TenantId,
    user: Option<String>,
    address: std::net::IpAddr,
}

/// A connection still waiting for its first-message `auth`: it holds a place in the
/// instance's and its address's counts until it is admitted or refused, so sockets without a
/// token cannot pile up past either cap.
pub struct Unauthenticated {
    caps: Caps,
    address: std::net::IpAddr,
}

/// Takes one from a count, forgetting the key at zero; true when it reached zero.
fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) -> bool {
    let Some(n) = map.get_mut(key) else {
        return false;
    };
    *n = n.saturating_sub(1);
    if *n > 0 {
        return false;
    }
    map.remove(key);
    true
}

impl Caps {
    pub fn new(limits: Limits, metrics: Metrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                limits,
                counts: Mutex::new(Counts::default()),
                metrics,
            }),
        }
    }

    /// Whether the instance is full, checked before the upgrade (answered with HTTP 503).
    pub fn instance_full(&self) -> bool {
        self.inner.counts.lock().total >= self.inner.limits.total
    }

    pub fn total(&self) -> usize {
        self.inner.counts.lock().total
    }

    /// Holds a place for a connection from `address` that has not authenticated yet.
    pub fn hold_unauthenticated(
        &self,
        address: std::net::IpAddr,
    ) -> Result<Unauthenticated, CapError> {
        let address = subscriber(address);
        let limits = self.inner.limits;
        let mut counts = self.inner.counts.lock();
        if counts.total >= limits.total {
            return Err(CapError::Instance);
        }
        if counts.per_address.get(&address).copied().unwrap_or(0) >= limits.per_address {
            return Err(CapError::Address);
        }
        counts.total += 1;
        *counts.per_address.entry(address).or_insert(0) += 1;
        Ok(Unauthenticated {
            caps: self.clone(),
            address,
        })
    }

    pub fn admit(&self, holder: Holder<'_>) -> Result<Slot, CapError> {
        let address = subscriber(holder.address);
        let limits = self.inner.limits;
        let mut counts = self.inner.counts.lock();
        let user =
            (!holder.user.is_empty()).then(|| (holder.tenant.clone(), holder.user.to_owned()));
        if counts.total >= limits.total {
            return Err(CapError::Instance);
        }
        if counts.per_tenant.get(holder.tenant).copied().unwrap_or(0) >= limits.per_tenant {
            return Err(CapError::Tenant);
        }
        if let Some(user) = &user
            && counts.per_user.get(user).copied().unwrap_or(0) >= limits.per_user
        {
            return Err(CapError::User);
        }
        if counts.per_address.get(&address).copied().unwrap_or(0) >= limits.per_address {
            return Err(CapError::Address);
        }
        counts.total += 1;
        *counts.per_tenant.entry(holder.tenant.clone()).or_insert(0) += 1;
        if let Some(user) = &user {
            *counts.per_user.entry(user.clone()).or_insert(0) += 1;
        }
        *counts.per_address.entry(address).or_insert(0) += 1;
        // Counted under the lock, as the release is: a tenant's series is removed when its
        // last connection ends, and must not be removed under a connection just admitted.
        self.inner.metrics.connections.inc();
        self.inner
            .metrics
            .tenant_connections
            .get_or_create(&TenantLabel {
                tenant: holder.tenant.to_string(),
            })
            .inc();
        drop(counts);
        Ok(Slot {
            caps: self.clone(),
            tenant: holder.tenant.clone(),
            user: user.map(|(_, u)| u),
            address,
        })
    }
}

impl Slot {
    /// Counts the connection under `user` (the `sub` of a token it re-authenticated with)
    /// instead of the user it was admitted as, unless `user` holds the most connections
    /// allowed already; then nothing changes.
    pub fn change_user(&mut self, user: &str) -> Result<(), CapError> {
        let new = (!user.is_empty()).then(|| user.to_owned());
        if new == self.user {
            return Ok(());
        }
        let inner = &self.caps.inner;
        let mut counts = inner.counts.lock();
        if let Some(new) = &new {
            let key = (self.tenant.clone(), new.clone());
            if counts.per_user.get(&key).copied().unwrap_or(0) >= inner.limits.per_user {
                return Err(CapError::User);
            }
            *counts.per_user.entry(key).or_insert(0) += 1;
        }
        if let Some(old) = self.user.take() {
            release(&mut counts.per_user, &(self.tenant.clone(), old));
        }
        self.user = new;
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let inner = &self.caps.inner;
        let mut counts = inner.counts.lock();
        counts.total = counts.total.saturating_sub(1);
        let tenant_gone = release(&mut counts.per_tenant, &self.tenant);
        if let Some(user) = self.user.take() {
            release(&mut counts.per_user, &(self.tenant.clone(), user));
        }
        release(&mut counts.per_address, &self.address);
        inner.metrics.connections.dec();
        let label = TenantLabel {
            tenant: self.tenant.to_string(),
        };
        // A tenant without connections leaves no series behind: tenants come and go.
        if tenant_gone {
            inner.metrics.tenant_connections.remove(&label);
        } else {
            inner.metrics.tenant_connections.get_or_create(&label).dec();
        }
    }
}

impl Drop for Unauthenticated {
    fn drop(&mut self) {
        let mut counts = self.caps.inner.counts.lock();
        counts.total = counts.total.saturating_sub(1);
        release(&mut counts.per_address, &self.address);
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;

    /// Caps with these limits, counting into metrics of their own.
    fn caps(total: usize, per_tenant: usize, per_user: usize, per_address: usize) -> Caps {
        let limits = Limits {
            total,
            per_tenant,
            per_user,
            per_address,
        };
        Caps::new(limits, Metrics::register(&mut Registry::default()))
    }

    fn holder<'a>(tenant: &'a TenantId, user: &'a str, address: &str) -> Holder<'a> {
        Holder {
            tenant,
            user,
            address: address.parse().unwrap(),
        }
    }

    fn tenants_a_and_b() -> (TenantId, TenantId) {
        (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap())
    }

    /// Why `caps` refuse this holder; `None` when they admit it (and free its place at once).
    fn refusal(caps: &Caps, tenant: &TenantId, user: &str, address: &str) -> Option<CapError> {
        caps.admit(holder(tenant, user, address)).err()
    }

    #[test]
    fn caps_per_tenant_and_instance_and_free_on_drop() {
        let caps = caps(3, 2, 10, 10);
        let (a, b) = tenants_a_and_b();
        let a1 = caps.admit(holder(&a, "1", "10.0.0.1")).unwrap();
        let _a2 = caps.admit(holder(&a, "2", "10.0.0.1")).unwrap();
        assert_eq!(refusal(&caps, &a, "3", "10.0.0.1"), Some(CapError::Tenant));
        let _b1 = caps.admit(holder(&b, "1", "10.0.0.1")).unwrap();
        assert!(caps.instance_full());
        assert_eq!(
            refusal(&caps, &b, "2", "10.0.0.1"),
            Some(CapError::Instance)
        );
        drop(a1);
        assert_eq!(caps.total(), 2);
        assert_eq!(refusal(&caps, &a, "1", "10.0.0.1"), None);
    }

    #[test]
    fn a_connection_that_changes_user_is_counted_under_the_new_one_if_it_has_room() {
        let (a, _) = tenants_a_and_b();
        let caps = caps(10, 10, 1, 10);
        let mut first = caps.admit(holder(&a, "alice", "10.0.0.1")).unwrap();
        let _bob = caps.admit(holder(&a, "bob", "10.0.0.2")).unwrap();
        // Bob holds his one connection: the move is refused and alice keeps her place.
        assert_eq!(first.change_user("bob").err(), Some(CapError::User));
        assert_eq!(
            refusal(&caps, &a, "alice", "10.0.0.3"),
            Some(CapError::User)
        );
        // Carol has room: alice's place is freed, carol's taken.
        first.change_user("carol").unwrap();
        assert_eq!(refusal(&caps, &a, "alice", "10.0.0.3"), None);
        assert_eq!(
            refusal(&caps, &a, "carol", "10.0.0.3"),
            Some(CapError::User)
        );
        first.change_user("carol").unwrap();
        drop(first);
        assert_eq!(refusal(&caps, &a, "carol", "10.0.0.3"), None);
        assert_eq!(caps.total(), 1);
    }

    #[test]
    fn a_connection_waiting_for_its_token_holds_an_instance_and_address_place() {
        let (a, _) = tenants_a_and_b();
        let caps = caps(3, 10, 10, 2);
        let hold = |address: &str| caps.hold_unauthenticated(address.parse().unwrap());
        let waiting = hold("192.0.2.1").unwrap();
        let _admitted = caps.admit(holder(&a, "u", "192.0.2.1")).unwrap();
        assert_eq!(hold("192.0.2.1").err(), Some(CapError::Address));
        let refused = refusal(&caps, &a, "v", "192.0.2.1");
        assert_eq!(refused, Some(CapError::Address));
        let _elsewhere = hold("192.0.2.2").unwrap();
        assert_eq!(caps.total(), 3);
        assert_eq!(hold("192.0.2.3").err(), Some(CapError::Instance));
        drop(waiting);
        assert_eq!(caps.total(), 2);
        assert_eq!(refusal(&caps, &a, "v", "192.0.2.1"), None);
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_waiting_or_admitted() {
        let (a, _) = tenants_a_and_b();
        let caps = caps(10, 10, 10, 2);
        let waiting = caps.hold_unauthenticated("2001:db8:0:1::1".parse().unwrap());
        let _admitted = caps.admit(holder(&a, "u", "2001:db8:0:1::2")).unwrap();
        let refused = refusal(&caps, &a, "v", "2001:db8:0:1:ffff::9");
        assert_eq!(refused, Some(CapError::Address));
        assert_eq!(refusal(&caps, &a, "v", "2001:db8:0:2::1"), None);
        drop(waiting);
        assert_eq!(refusal(&caps, &a, "v", "2001:db8:0:1:ffff::9"), None);
    }

    #[test]
    fn a_tenant_without_connections_leaves_no_metric_series() {
        let mut registry = Registry::default();
        let limits = Limits {
            total: 10,
            per_tenant: 10,
            per_user: 10,
            per_address: 10,
        };
        let caps = Caps::new(limits, Metrics::register(&mut registry));
        let series = || {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            text.lines()
                .filter(|l| l.starts_with("pulse_gateway_tenant_connections{"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let (a, b) = tenants_a_and_b();
        let a1 = caps.admit(holder(&a, "1", "10.0.0.1")).unwrap();
        let a2 = caps.admit(holder(&a, "2", "10.0.0.1")).unwrap();
        let b1 = caps.admit(holder(&b, "1", "10.0.0.1")).unwrap();
        assert_eq!(series().len(), 2);
        drop(a1);
        assert!(series().contains(&r#"pulse_gateway_tenant_connections{tenant="a"} 1"#.to_owned()));
        drop((a2, b1));
        assert!(series().is_empty(), "{:?}", series());
    }

    #[test]
    fn caps_per_user_and_address() {
        let caps = caps(100, 100, 2, 3);
        let (a, b) = tenants_a_and_b();
        let u1 = caps.admit(holder(&a, "7", "10.0.0.1")).unwrap();
        let _u2 = caps.admit(holder(&a, "7", "10.0.0.2")).unwrap();
        assert_eq!(refusal(&caps, &a, "7", "10.0.0.3"), Some(CapError::User));
        // The same user id of another tenant is another user.
        let _other = caps.admit(holder(&b, "7", "10.0.0.1")).unwrap();
        let _anon = caps.admit(holder(&a, "", "10.0.0.1")).unwrap();
        assert_eq!(refusal(&caps, &a, "", "10.0.0.1"), Some(CapError::Address));
        drop(u1);
        assert_eq!(refusal(&caps, &a, "7", "10.0.0.9"), None);
        assert_eq!(refusal(&caps, &a, "", "10.0.0.1"), None);
    }
}

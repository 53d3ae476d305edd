//! Connections by user, so that a deleted or demoted user's connections end within moments of
//! the change, not when their tickets expire.
//!
//! The active poller publishes each change on `pulse.v1.<tenant_id>.users`; every gateway
//! follows all tenants' with one subscription. A deleted user's connections close with 4003
//! (do not retry: the user is gone), a changed role's with 4001 (a fresh ticket carries the
//! new role), and those of a user whose sessions all ended (a logout everywhere, a new
//! password) with 4001 too (no fresh ticket comes without a new login). Only connections
//! whose token names a user (`sub`) are followed.
//!
//! A deleted user is remembered for [`DELETED_REMEMBERED`]: a ticket minted before the
//! deletion would otherwise still connect (or be sent in `auth`) until it expires, and is
//! closed with 4003 at once instead. A token issued more than [`DELETION_MARGIN`] after the
//! deletion (`iat`) is let in: the id may name a user created again, in a database restored or
//! reset. A role change (or a move to another tenant, which the old tenant sees as one) is
//! remembered as long: a ticket issued before it (its `iat` says so) would connect with the
//! old role, or to the old tenant, and is closed with 4001 instead, for a fresh one.
//!
//! A session ended before its time (a logout) closes with 4001 the connections whose ticket
//! names it (claim `sid`), and its tickets are refused for [`SESSION_REMEMBERED`] (up to
//! [`MAX_ENDED_SESSIONS`] at once; beyond, only by their expiry): the user's other sessions are
//! left alone. A renewal is judged again under the lock a change is applied under.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use parking_lot::Mutex;
use pulse_proto::subject::{USERS_WILDCARD, users_subject_tenant};
use pulse_proto::{TenantId, UserChange, UserChanged, close};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::auth::Issued;
use crate::ids::ConnId;

type UserKey = (TenantId, String);

/// How long a deleted user's tokens are refused after the deletion is announced: far longer
/// than a ticket lives (a minute), and than most tokens of other issuers.
pub const DELETED_REMEMBERED: Duration = Duration::from_secs(24 * 3600);

/// How long an ended session's tickets are refused: far longer than one of them lives (a
/// minute at most); only the web service's tickets name a session.
pub const SESSION_REMEMBERED: Duration = Duration::from_secs(600);

/// Most ended sessions remembered at once (some 10 MB): beyond, one more still closes its
/// connections, but its tickets are refused only by their expiry.
pub const MAX_ENDED_SESSIONS: usize = 100_000;

/// A token issued up to this long after a deletion (as this gateway saw it) still predates
/// it: the issuer's clock may run ahead of the gateway's, and no issuer mints a fresh ticket
/// for a deleted user, so a ticket fetched just before the deletion must not pass for one
/// minted after it.
pub const DELETION_MARGIN: u64 = 5;

/// The connections of every user on this instance, and the users deleted lately.
#[derive(Default)]
pub struct Revocations {
    users: Mutex<Users>,
}

#[derive(Default)]
struct Users {
    /// With what each connection's token says of when it was issued.
    connections: HashMap<UserKey, HashMap<ConnId, (Issued, Arc<Revoked>)>>,
    /// Users deleted, whose role changed, or all of whose sessions ended, within
    /// [`DELETED_REMEMBERED`], with when the change was announced.
    changed: HashMap<UserKey, Change>,
    /// Sessions ended within [`SESSION_REMEMBERED`], with when that was announced.
    ended_sessions: HashMap<(TenantId, u64), Instant>,
    /// When changes no longer remembered were last forgotten.
    pruned: Option<Instant>,
}

/// How often changes past [`DELETED_REMEMBERED`] are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

impl Users {
    /// The close code for a token of the user `key` issued as `issued` says, when it predates
    /// a change remembered here.
    fn changed_before(&self, key: &UserKey, issued: Issued) -> Option<u16> {
        let changed = self
            .changed
            .get(key)
            .filter(|c| c.covers(issued))
            .map(|c| c.code);
        changed.or_else(|| {
            self.session_ended(&key.0, issued)
                .then_some(close::UNAUTHORIZED)
        })
    }

    /// Ends with `code` the connections of the user `key` whose token `ends` says; returns how
    /// many.
    fn end_connections(&self, key: &UserKey, code: u16, ends: impl Fn(Issued) -> bool) -> usize {
        let Some(conns) = self.connections.get(key) else {
            return 0;
        };
        let mut ended = 0;
        for (issued, revoked) in conns.values() {
            if ends(*issued) {
                revoked.revoke(code);
                ended += 1;
            }
        }
        ended
    }

    /// Forgets the sessions ended longer than [`SESSION_REMEMBERED`] ago.
    fn forget_ended_sessions(&mut self) {
        self.ended_sessions
            .retain(|_, at| at.elapsed() < SESSION_REMEMBERED);
    }

    /// Whether the session a token of `tenant` was issued for ended lately.
    fn session_ended(&self, tenant: &TenantId, issued: Issued) -> bool {
        issued.session.is_some_and(|sid| {
            self.ended_sessions
                .get(&(tenant.clone(), sid))
                .is_some_and(|at| at.elapsed() < SESSION_REMEMBERED)
        })
    }
}

#[derive(Clone, Copy)]
struct Change {
    seen: Instant,
    /// Unix seconds, to compare with a token's `iat`.
    at: u64,
    /// 4003 for a deletion, 4001 for a role change or the end of every session.
    code: u16,
    /// How long after `at` a token still predates the change: [`DELETION_MARGIN`] for a
    /// deletion or the end of every session (no fresh ticket comes without a new login, and
    /// the issuer's clock may run ahead), none for a role change (a fresh ticket is what the
    /// client is told to get).
    margin: u64,
    /// A logout everywhere, counted: a ticket that carries its count is judged by it, not by
    /// the clocks (see [`Issued::signouts`]).
    signouts: Option<u64>,
}

impl Change {
    fn now(change: &UserChanged) -> Self {
        let (code, margin) = match change.change {
            UserChange::Deleted => (close::FORBIDDEN, DELETION_MARGIN),
            UserChange::SignedOut => (close::UNAUTHORIZED, DELETION_MARGIN),
            UserChange::Role => (close::UNAUTHORIZED, 0),
            // Not a change of the user's: `Revocations::apply` deals with it before.
            UserChange::SessionEnded => (close::UNAUTHORIZED, 0),
        };
        Self {
            seen: Instant::now(),
            at: crate::auth::unix_now(),
            code,
            margin,
            signouts: change
                .signouts
                .filter(|_| change.change == UserChange::SignedOut),
        }
    }

    fn remembered(&self) -> bool {
        self.seen.elapsed() < DELETED_REMEMBERED
    }

    /// Whether a token issued as `issued` says predates the change. A logout everywhere,
    /// counted, covers exactly the tickets whose session was read with a lower count: the
    /// ones of a session started since (a new login) are let in at once. Otherwise by `iat`:
    /// for a role change, one from an earlier second; for a deletion or the end of every
    /// session, one from up to [`DELETION_MARGIN`] after it (clocks differ, and such a user
    /// gets no fresh ticket without a new login). One that names no time is taken to predate a
    /// deletion only (a token minted elsewhere without `iat` would keep its user out for a
    /// day). A later one is let in: the id names a user created again (a database reset and
    /// seeded again), or one that logged in again.
    fn covers(&self, issued: Issued) -> bool {
        if !self.remembered() {
            return false;
        }
        let deleted = self.code == close::FORBIDDEN;
        let until = self.at.saturating_add(self.margin);
        let before = issued.iat.map_or(deleted, |iat| iat < until);
        match (self.signouts, issued.signouts) {
            // Issued well after the change yet counting fewer: a database restored or reset
            // since, where the count started again; let in, as the id of a user created again.
            (Some(ended), Some(held)) => held < ended && issued.iat.is_none_or(|_| before),
            _ => before,
        }
    }
}

/// Set once for a connection whose user changed: the close code to end it with.
#[derive(Default)]
pub struct Revoked {
    code: AtomicU16,
    wake: Notify,
}

impl Revoked {
    /// Resolves with the close code once the connection's user changed.
    pub async fn wait(&self) -> u16 {
        loop {
            let woken = self.wake.notified();
            let code = self.code.load(Ordering::Acquire);
            if code != 0 {
                return code;
            }
            woken.await;
        }
    }

    /// The close code, if the connection's user has changed already.
    pub fn now(&self) -> Option<u16> {
        Some(self.code.load(Ordering::Acquire)).filter(|&code| code != 0)
    }

    fn revoke(&self, code: u16) {
        self.code.store(code, Ordering::Release);
        self.wake.notify_one();
    }
}

/// A connection's place in [`Revocations`]; leaving it when dropped.
pub struct Registration {
    revocations: Arc<Revocations>,
    key: Option<UserKey>,
    conn: ConnId,
    pub revoked: Arc<Revoked>,
}

impl Registration {
    /// The connection renewed its token as the same user: later changes judge the new one. A
    /// change announced since the token was checked ([`Revocations::changed_since`]) found
    /// the old one: judged again here, under the lock a change is applied under.
    pub fn reissued(&self, issued: Issued) {
        let Some(key) = &self.key else { return };
        let mut users = self.revocations.users.lock();
        if let Some(code) = users.changed_before(key, issued) {
            self.revoked.revoke(code);
        }
        if let Some(held) = users
            .connections
            .get_mut(key)
            .and_then(|conns| conns.get_mut(&self.conn))
        {
            held.0 = issued;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let mut users = self.revocations.users.lock();
        if let Some(conns) = users.connections.get_mut(&key) {
            conns.remove(&self.conn);
            if conns.is_empty() {
                users.connections.remove(&key);
            }
        }
    }
}

impl Revocations {
    /// Whether a token of user `sub` of `tenant` issued as `issued` says was issued before a
    /// deletion, role change or end of every session of that user remembered here: such a
    /// token no longer speaks for them.
    pub fn changed_since(&self, tenant: &TenantId, sub: &str, issued: Issued) -> bool {
        !sub.is_empty()
            && self
                .users
                .lock()
                .changed_before(&(tenant.clone(), sub.to_owned()), issued)
                .is_some()
    }

    /// Follows `conn` as a connection of user `sub` of `tenant` (not at all when `sub` is
    /// empty: a token minted elsewhere may name no user), whose token was issued as `issued`
    /// says.
    /// A token of a user deleted (or whose role changed) lately, issued before the change, is
    /// revoked at once.
    pub fn register(
        self: &Arc<Self>,
        tenant: &TenantId,
        sub: &str,
        issued: impl Into<Issued>,
        conn: ConnId,
    ) -> Registration {
        let issued = issued.into();
        let revoked = Arc::new(Revoked::default());
        let key = (!sub.is_empty()).then(|| (tenant.clone(), sub.to_owned()));
        if let Some(key) = &key {
            // Checked under the lock `apply` holds: a deletion announced meanwhile either
            // finds this connection or is found by it.
            let mut users = self.users.lock();
            if let Some(code) = users.changed_before(key, issued) {
                revoked.revoke(code);
            }
            users
                .connections
                .entry(key.clone())
                .or_default()
                .insert(conn, (issued, revoked.clone()));
        }
        Registration {
            revocations: self.clone(),
            key,
            conn,
            revoked,
        }
    }

    /// Ends the connections of the user `change` names; returns how many. A counted logout
    /// everywhere ends those whose ticket it covers: a new login's may have connected before
    /// the news came.
    pub fn apply(&self, change: &UserChanged) -> usize {
        let now = Change::now(change);
        let code = now.code;
        let key = (change.tenant_id.clone(), change.user_id.clone());
        let mut users = self.users.lock();
        // Forgotten at most once a minute: a mass change (a bulk role update) must not scan
        // the map once per change under the lock every connection takes.
        if users.pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            users.changed.retain(|_, c| c.remembered());
            users.forget_ended_sessions();
            users.pruned = Some(Instant::now());
        }
        // One session: its connections only, and the user's other changes stand.
        if change.change == UserChange::SessionEnded {
            let Some(sid) = change.session.as_deref().and_then(crate::auth::session_id) else {
                return 0;
            };
            if users.ended_sessions.len() >= MAX_ENDED_SESSIONS {
                users.forget_ended_sessions();
            }
            if users.ended_sessions.len() < MAX_ENDED_SESSIONS {
                users
                    .ended_sessions
                    .insert((change.tenant_id.clone(), sid), Instant::now());
            }
            return users.end_connections(&key, close::UNAUTHORIZED, |issued| {
                issued.session == Some(sid)
            });
        }
        // The latest change counts: a role change after a deletion means the id names a user
        // again. Not the end of its sessions, which a deletion ends too (a logout everywhere
        // racing the deletion may be announced after it).
        let after_deletion = users
            .changed
            .get(&key)
            .is_some_and(|c| c.code == close::FORBIDDEN && c.remembered());
        if !(after_deletion && change.change == UserChange::SignedOut) {
            users.changed.insert(key.clone(), now);
        }
        users.end_connections(&key, code, |issued| {
            now.signouts.is_none() || now.covers(issued)
        })
    }

    /// Number of users followed.
    pub fn users(&self) -> usize {
        self.users.lock().connections.len()
    }
}

/// Follows every tenant's user changes until `stop` is cancelled. The subscription is renewed
/// by the NATS client after a reconnect.
pub fn follow(nats: async_nats::Client, revocations: Arc<Revocations>, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut changes = loop {
            match nats.subscribe(USERS_WILDCARD).await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot follow user changes; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        () = stop.cancelled() => return,
                    }
                }
            }
        };
        loop {
            let message = tokio::select! {
                m = changes.next() => m,
                () = stop.cancelled() => return,
            };
            let Some(message) = message else { return };
            // Nothing awaits below: the guard ends with the message.
            let _span = tracing::info_span!("user_change", subject = %message.subject).entered();
            let Ok(change) = serde_json::from_slice::<UserChanged>(&message.payload) else {
                tracing::warn!(subject = %message.subject, "ignoring a malformed user change");
                continue;
            };
            // A change counts only on its own tenant's subject.
            if users_subject_tenant(&message.subject) != Some(change.tenant_id.clone()) {
                tracing::warn!(subject = %message.subject, "ignoring a user change for another tenant");
                continue;
            }
            let closed = revocations.apply(&change);
            tracing::info!(
                tenant = %change.tenant_id, user = %change.user_id, change = ?change.change, closed,
                "user changed"
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(tenant: &str, user: &str, change: UserChange) -> UserChanged {
        UserChanged {
            kind: Default::default(),
            tenant_id: TenantId::parse(tenant).unwrap(),
            user_id: user.into(),
            change,
            signouts: None,
            session: None,
        }
    }

    #[tokio::test]
    async fn a_change_reaches_that_users_connections_only() {
        let r = Arc::new(Revocations::default());
        let acme = TenantId::parse("acme").unwrap();
        let globex = TenantId::parse("globex").unwrap();
        let a1 = r.register(&acme, "7", None, 1);
        let a2 = r.register(&acme, "7", None, 2);
        let other_user = r.register(&acme, "8", None, 3);
        let other_tenant = r.register(&globex, "7", None, 4);
        let anonymous = r.register(&acme, "", None, 5);
        assert_eq!(r.apply(&change("acme", "7", UserChange::Deleted)), 2);
        assert_eq!(a1.revoked.wait().await, close::FORBIDDEN);
        assert_eq!(a2.revoked.wait().await, close::FORBIDDEN);
        for untouched in [&other_user, &other_tenant, &anonymous] {
            assert_eq!(untouched.revoked.code.load(Ordering::Acquire), 0);
        }
        assert_eq!(r.apply(&change("acme", "8", UserChange::Role)), 1);
        assert_eq!(other_user.revoked.wait().await, close::UNAUTHORIZED);
        let signed_out = r.register(&globex, "9", None, 6);
        assert_eq!(r.apply(&change("globex", "9", UserChange::SignedOut)), 1);
        assert_eq!(signed_out.revoked.wait().await, close::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn a_sessions_end_closes_its_connections_and_refuses_its_tickets_only() {
        let r = Arc::new(Revocations::default());
        let acme = TenantId::parse("acme").unwrap();
        let of_session = |sid: u64| Issued {
            session: Some(sid),
            ..Issued::default()
        };
        let ended = r.register(&acme, "7", of_session(0xab), 1);
        let other_session = r.register(&acme, "7", of_session(0xcd), 2);
        let no_session = r.register(&acme, "7", None, 3);
        let mut end = change("acme", "7", UserChange::SessionEnded);
        end.session = Some("00000000000000ab".into());
        assert_eq!(r.apply(&end), 1);
        assert_eq!(ended.revoked.wait().await, close::UNAUTHORIZED);
        for untouched in [&other_session, &no_session] {
            assert_eq!(untouched.revoked.now(), None);
        }
        // Its tickets are refused from then on, in this tenant; the user's others are not.
        let late = r.register(&acme, "7", of_session(0xab), 4);
        assert_eq!(late.revoked.now(), Some(close::UNAUTHORIZED));
        assert!(r.changed_since(&acme, "7", of_session(0xab)));
        assert!(!r.changed_since(&acme, "7", of_session(0xcd)));
        let globex = TenantId::parse("globex").unwrap();
        assert!(!r.changed_since(&globex, "7", of_session(0xab)));
        // A session's end that names no session, or not in its form, ends nothing.
        for bad in [None, Some("AB"), Some("00000000000000AB")] {
            end.session = bad.map(Into::into);
            assert_eq!(r.apply(&end), 0, "{bad:?}");
        }
        assert_eq!(other_session.revoked.now(), None);
    }

    #[tokio::test]
    async fn tokens_from_before_a_deletion_or_role_change_are_revoked_at_once() {
        let r = Arc::new(Revocations::default());
        let acme = TenantId::parse("acme").unwrap();
        // Read before the deletion: it is seen in this second or a later one.
        let now = crate::auth::unix_now();
        r.apply(&change("acme", "7", UserChange::Deleted));
        r.apply(&change("acme", "8", UserChange::Role));
        // Issued in a second before the deletion, or at no time said: revoked.
        for (conn, iat) in [(1, Some(now - 30)), (2, Some(now - 1)), (3, None)] {
            let late = r.register(&acme, "7", iat, conn);
            assert_eq!(late.revoked.wait().await, close::FORBIDDEN, "{iat:?}");
        }
        // Issued within DELETION_MARGIN after it, by a clock ahead of this one: revoked too.
        for (conn, iat) in [(10, Some(now)), (11, Some(now + 2))] {
            let ahead = r.register(&acme, "7", iat, conn);
            assert_eq!(ahead.revoked.wait().await, close::FORBIDDEN, "{iat:?}");
        }
        // Issued later: the id names a user created again.
        let later = now + DELETION_MARGIN + 2;
        for (conn, iat) in [(4, Some(later)), (6, Some(later + 1))] {
            let again = r.register(&acme, "7", iat, conn);
            assert_eq!(again.revoked.code.load(Ordering::Acquire), 0, "{iat:?}");
        }
        // A role change is remembered too: a ticket from before it carries the old role (or
        // the old tenant, for a user moved) and gets 4001, for a fresh one. One that says no
        // time, or a later one, is let in.
        let stale = r.register(&acme, "8", Some(now - 30), 5);
        assert_eq!(stale.revoked.wait().await, close::UNAUTHORIZED);
        for (conn, iat) in [(7, None), (8, Some(now + 1))] {
            let fresh = r.register(&acme, "8", iat, conn);
            assert_eq!(fresh.revoked.code.load(Ordering::Acquire), 0, "{iat:?}");
        }
        // The latest change counts: a role change after a deletion means the id names a user
        // again, and its tickets from before get 4001, not 4003.
        r.apply(&change("acme", "7", UserChange::Role));
        let before = r.register(&acme, "7", Some(now - 30), 9);
        assert_eq!(before.revoked.wait().await, close::UNAUTHORIZED);
        // Every session ended: a ticket from before, or from a clock up to DELETION_MARGIN
        // ahead, gets 4001 too; a later one (a new login), and one that names no time, are
        // let in.
        r.apply(&change("acme", "5", UserChange::SignedOut));
        for (conn, iat) in [(20, now - 30), (21, now), (22, now + DELETION_MARGIN - 1)] {
            let before = r.register(&acme, "5", Some(iat), conn);
            assert_eq!(before.revoked.wait().await, close::UNAUTHORIZED, "{iat}");
        }
        for (conn, iat) in [(23, Some(now + 60)), (24, None)] {
            let after = r.register(&acme, "5", iat, conn);
            assert_eq!(after.revoked.code.load(Ordering::Acquire), 0, "{iat:?}");
        }
        // Announced after a deletion (a logout everywhere racing it), it does not undo it.
        r.apply(&change("acme", "4", UserChange::Deleted));
        r.apply(&change("acme", "4", UserChange::SignedOut));
        let deleted = r.register(&acme, "4", None, 25);
        assert_eq!(deleted.revoked.wait().await, close::FORBIDDEN);
    }

    #[test]
    fn a_closed_connection_is_forgotten() {
        let r = Arc::new(Revocations::default());
        let acme = TenantId::parse("acme").unwrap();
        let reg = r.register(&acme, "7", None, 1);
        assert_eq!(r.users(), 1);
        drop(reg);
        assert_eq!(r.users(), 0);
        assert_eq!(r.apply(&change("acme", "7", UserChange::Deleted)), 0);
    }
}

//! Shared fixtures: test configurations, a tenant watched on its subjects from before a poller
//! starts, one-off writes, an in-process poller on port 0 and waits on its readiness and
//! metrics, NATS subscribers with deadlines, and readers of the events stream. What every
//! crate's tests share (scratch databases and their rows, private nats-servers, waiting,
//! metrics) comes from `pulse-test-support`, re-exported here.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use pulse_poller::PollerConfig;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use pulse_test_support::nats::PrivateNats;
pub use pulse_test_support::{
    ScratchDb, assert_took_less_than, base_database_url, eventually, free_port, metric, nats_url,
    parse_config, unique,
};

/// A configuration for tests: fast telemetry, a slow safety net (so a fast delivery proves
/// NOTIFY works), everything else default.
pub fn config(db: &ScratchDb) -> PollerConfig {
    config_with(db, &[])
}

/// [`config`] with `extra` flags (`--poll-seconds 1`, `--nats-url …`); a flag given in `extra`
/// replaces the test default of the same name.
pub fn config_with(db: &ScratchDb, extra: &[&str]) -> PollerConfig {
    let nats = nats_url();
    let defaults = [
        ("--database-url", db.url.as_str()),
        ("--nats-url", &nats),
        ("--poll-seconds", "60"),
        ("--telemetry-poll-ms", "50"),
        ("--standby-retry-ms", "200"),
    ];
    let mut args = vec!["pulse-poller"];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    parse_config(&args)
}

/// A migrated scratch database of the test's own with one tenant of `devices` devices, whose
/// id begins with `label`.
pub async fn db_with_tenant(label: &str, devices: usize) -> (ScratchDb, String) {
    let db = ScratchDb::migrated("poller").await;
    let tenant = db.tenant(label, devices).await;
    (db, tenant)
}

/// [`db_with_tenant`], with subscriptions to the tenant's subjects `pulse.v1.<tenant>.<each of
/// subjects>` (`alerts`, `fleet`, `device.*.telemetry`, …), in place before the test starts a
/// poller, so that its first messages are seen too.
pub async fn watched_tenant<const N: usize>(
    label: &str,
    devices: usize,
    subjects: [&str; N],
) -> (ScratchDb, String, [Sub; N]) {
    let (db, tenant) = db_with_tenant(label, devices).await;
    let mut subs = Vec::with_capacity(N);
    for subject in subjects {
        subs.push(subscribe(&format!("pulse.v1.{tenant}.{subject}")).await);
    }
    let Ok(subs) = subs.try_into() else {
        unreachable!("one subscription per subject")
    };
    (db, tenant, subs)
}

/// Runs `sql` on `db` with `tenant` as `$1`: the one-off writes a test stages.
pub async fn exec(db: &ScratchDb, sql: &str, tenant: &str) {
    exec_with(db, sql, tenant).await;
}

/// Runs `sql` on `db` with `arg` as `$1`.
pub async fn exec_with<T>(db: &ScratchDb, sql: &str, arg: T)
where
    T: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
{
    sqlx::query(sql).bind(arg).execute(&db.pool).await.unwrap();
}

/// Users `<who>@<tenant>.example` of `tenant`, one per name in `who`; returns their ids.
pub async fn add_users(db: &ScratchDb, tenant: &str, who: &[&str]) -> Vec<i64> {
    let mut ids = Vec::with_capacity(who.len());
    for name in who {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (email, password_hash, tenant_id, role) \
             VALUES ($1, 'x', $2, 'customer_admin') RETURNING user_id",
        )
        .bind(format!("{name}@{tenant}.example"))
        .bind(tenant)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        ids.push(id);
    }
    ids
}

/// Waits until `poller` listens for change notifications: a write to a device of `tenant`
/// (which must have `dev-1`) comes back as one.
pub async fn wait_listening(poller: &PollerHandle, db: &ScratchDb, tenant: &str) {
    eventually("poller listening", Duration::from_secs(10), || async {
        let seen = poller.metric("pulse_poller_notifications_total", &[]).await;
        if seen == 0.0 {
            let sql = "UPDATE devices SET battery_pct = random() * 100 WHERE tenant_id = $1";
            exec(db, sql, tenant).await;
        }
        seen > 0.0
    })
    .await;
}

/// A database as deployed ([`pulse_test_support::Deployed`]) with a tenant of one device and
/// its users `who`, whose changes `changes` hears, and an active poller on it logged in as a
/// member of `pulse_poller` only, listening.
pub struct DeployedUsers {
    pub deployed: pulse_test_support::Deployed,
    pub tenant: String,
    pub ids: Vec<i64>,
    pub changes: Sub,
    pub poller: PollerHandle,
}

/// Starts a [`DeployedUsers`]; its database and tenant are named after `label`.
pub async fn deployed_users(label: &str, who: &[&str]) -> DeployedUsers {
    let deployed = pulse_test_support::Deployed::create(label).await;
    let db = &deployed.db;
    let tenant = db.tenant(label, 1).await;
    let ids = add_users(db, &tenant, who).await;
    let changes = subscribe(&format!("pulse.v1.{tenant}.users")).await;
    let poller = spawn_active(config_with(db, &["--database-url", &deployed.poller_url])).await;
    wait_listening(&poller, db, &tenant).await;
    DeployedUsers {
        deployed,
        tenant,
        ids,
        changes,
        poller,
    }
}

/// The count `sql` (a `SELECT count(*) …`) gives on `db`.
pub async fn count(db: &ScratchDb, sql: &str) -> i64 {
    match sqlx::query_scalar(sql).fetch_one(&db.pool).await {
        Ok(n) => n,
        Err(e) => panic!("{sql}: {e}"),
    }
}

/// Events of `db` not marked relayed yet: the relay's backlog.
pub async fn unrelayed(db: &ScratchDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE relayed_at IS NULL")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

/// Waits until the outbox holds no event left to relay; panics naming `what` after `within`.
pub async fn wait_all_relayed(db: &ScratchDb, what: &str, within: Duration) {
    eventually(what, within, || async { unrelayed(db).await == 0 }).await;
}

/// An in-process poller; stopped on drop.
pub struct PollerHandle {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_poller(config: PollerConfig) -> PollerHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(pulse_poller::run(
        config,
        listener,
        stop.clone().cancelled_owned(),
    ));
    PollerHandle {
        addr,
        stop,
        task: Some(task),
    }
}

/// [`spawn_poller`], once it holds the leadership: what it publishes from here on reflects
/// every write the test makes after this returns.
pub async fn spawn_active(config: PollerConfig) -> PollerHandle {
    let poller = spawn_poller(config).await;
    poller.wait_active().await;
    poller
}

impl PollerHandle {
    async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(format!("http://{}{path}", self.addr))
            .await
            .unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.unwrap()
    }

    pub async fn ready(&self) -> Value {
        self.get("/readyz").await.json().await.unwrap()
    }

    /// This poller's errors of `stage` (`pulse_poller_errors_total{stage}`) so far.
    pub async fn errors(&self, stage: &str) -> f64 {
        self.metric("pulse_poller_errors_total", &[stage]).await
    }

    /// The value of one of this poller's metrics (see [`metric`]).
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        metric(&self.metrics().await, name, labels)
    }

    /// Waits up to 10 s until this poller's metric `name` with `labels` (see [`metric`]) is at
    /// least `at_least`; panics naming `what`.
    pub async fn wait_metric(&self, what: &str, name: &str, labels: &[&str], at_least: f64) {
        eventually(what, Duration::from_secs(10), || async {
            self.metric(name, labels).await >= at_least
        })
        .await;
    }

    /// Waits up to 10 s until this poller's metric `name` with `labels` has grown by `by` from
    /// what it is now; panics naming `what`.
    pub async fn wait_metric_grows(&self, what: &str, name: &str, labels: &[&str], by: f64) {
        let start = self.metric(name, labels).await;
        self.wait_metric(what, name, labels, start + by).await;
    }

    /// Waits until the readiness document satisfies `check`; panics naming `what` after
    /// `within`.
    pub async fn wait_readiness(
        &self,
        what: &str,
        within: Duration,
        check: impl Fn(&Value) -> bool,
    ) {
        eventually(what, within, || async { check(&self.ready().await) }).await;
    }

    /// Waits until this poller is active but holds back, its streams check false and its
    /// readiness saying why: `info.streams` begins with `waiting` (e.g. "waiting for
    /// JetStream"), with NATS itself connected.
    pub async fn wait_active_and_waiting(&self, waiting: &str, within: Duration) {
        let what = format!("active, not ready, {waiting}");
        self.wait_readiness(&what, within, |r| {
            r["info"]["role"] == "active"
                && r["ready"] == false
                && r["checks"]["streams"] == false
                && r["checks"]["nats"] == true
                && r["info"]["streams"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(waiting))
        })
        .await;
    }

    /// Waits up to 10 s until this poller says it is ready.
    pub async fn wait_ready(&self) {
        self.wait_readiness("ready", Duration::from_secs(10), |r| r["ready"] == true)
            .await;
    }

    /// Waits up to 10 s until this poller's readiness says NATS is gone.
    pub async fn wait_nats_gone(&self) {
        self.wait_readiness(
            "readiness false while NATS is gone",
            Duration::from_secs(10),
            |r| r["checks"]["nats"] == false,
        )
        .await;
    }

    /// Waits up to 10 s until this poller holds the leadership (its role is `active`).
    pub async fn wait_active(&self) {
        self.wait_readiness("poller active", Duration::from_secs(10), |r| {
            r["info"]["role"] == "active"
        })
        .await;
    }

    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("poller did not stop within 10 s")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for PollerHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// [`config`] of `db` for a poller publishing to `nats`.
pub fn config_on(db: &ScratchDb, nats: &PrivateNats) -> PollerConfig {
    config_with(db, &["--nats-url", &nats.url])
}

/// A ready poller publishing to a nats-server of its own, which the test may stop, freeze or
/// start again, on a database of its own with one tenant of `devices` devices.
pub struct OnPrivateNats {
    pub nats: PrivateNats,
    pub db: ScratchDb,
    pub tenant: String,
    pub poller: PollerHandle,
}

/// Starts an [`OnPrivateNats`]; its tenant id begins with `label`.
pub async fn on_private_nats(label: &str, devices: usize) -> OnPrivateNats {
    let nats = PrivateNats::start().await;
    let (db, tenant) = db_with_tenant(label, devices).await;
    let poller = spawn_poller(config_on(&db, &nats)).await;
    poller.wait_ready().await;
    OnPrivateNats {
        nats,
        db,
        tenant,
        poller,
    }
}

/// A subscription to `subject` through `client`, in place at the server once this returns (so
/// nothing published after it is missed); messages as they came, headers included.
pub async fn subscribed(client: &async_nats::Client, subject: String) -> async_nats::Subscriber {
    let sub = client.subscribe(subject).await.unwrap();
    pulse_test_support::nats::round_trip(client).await;
    sub
}

/// A NATS subscription that yields parsed JSON payloads.
pub struct Sub {
    inner: async_nats::Subscriber,
    _client: async_nats::Client,
}

pub async fn subscribe(subject: &str) -> Sub {
    let client = pulse_test_support::nats::shared().await;
    let inner = subscribed(&client, subject.to_owned()).await;
    Sub {
        inner,
        _client: client,
    }
}

impl Sub {
    /// Waits up to `within` for an alerts snapshot that lists alert `id`; panics after.
    pub async fn lists_alert(&mut self, id: i64, within: Duration) -> Value {
        self.until(within, |v| alert_ids(v).contains(&id)).await
    }

    /// The next message within `within`, or `None`.
    pub async fn next_within(&mut self, within: Duration) -> Option<(String, Value)> {
        let msg = tokio::time::timeout(within, self.inner.next())
            .await
            .ok()??;
        let value = serde_json::from_slice(&msg.payload).unwrap();
        Some((msg.subject.to_string(), value))
    }

    /// The next message's body, which must come within `within`.
    pub async fn next_body(&mut self, within: Duration) -> Value {
        match self.next_within(within).await {
            Some((_, body)) => body,
            None => panic!("no message within {within:?}"),
        }
    }

    /// Waits `within` and panics if a message came meanwhile.
    pub async fn assert_silent_for(&mut self, within: Duration) {
        if let Some((subject, v)) = self.next_within(within).await {
            panic!("expected nothing within {within:?}, got {v} on {subject}");
        }
    }

    /// Skips messages until one satisfies `want`; panics at the deadline.
    pub async fn until(&mut self, within: Duration, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_within(left).await {
                Some((_, v)) if want(&v) => return v,
                Some(_) => continue,
                None => panic!("no matching message within {within:?}"),
            }
        }
    }
}

/// Alert ids listed in an alerts snapshot.
pub fn alert_ids(snapshot: &Value) -> Vec<i64> {
    snapshot["alerts"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["alert_id"].as_i64()).collect())
        .unwrap_or_default()
}

/// Creates (or updates) the contract's streams with the default poller configuration.
pub async fn ensure_streams(js: &async_nats::jetstream::Context) {
    let c: PollerConfig = parse_config(&["pulse-poller", "--database-url", "postgres://x@h/x"]);
    pulse_poller::streams::ensure(js, &c).await.unwrap();
}

/// Every message `PULSE_EVENTS` holds for `subject`, in stream order. The stream is asked for
/// up to 5 s: a server reloading its configuration (a test changing a user's permissions)
/// answers no JetStream request for a moment.
pub async fn stored_events(
    js: &async_nats::jetstream::Context,
    subject: &str,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    use async_nats::jetstream::stream::DirectGetErrorKind;
    let deadline = Instant::now() + Duration::from_secs(5);
    let stream = loop {
        match js.get_stream(pulse_proto::subject::EVENTS_STREAM).await {
            Ok(stream) => break stream,
            Err(e) if Instant::now() < deadline => {
                eprintln!("the events stream does not answer yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot look the events stream up: {e}"),
        }
    };
    let mut out = Vec::new();
    let mut from = 1;
    loop {
        match stream
            .direct_get_next_for_subject(subject, Some(from))
            .await
        {
            Ok(m) => {
                from = m.sequence + 1;
                out.push(m);
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => return out,
            Err(e) => panic!("cannot read {subject} from the events stream: {e}"),
        }
    }
}

/// The `Pulse-Seq` and `Nats-Msg-Id` headers and the JSON body of an event message.
pub fn event_parts(
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
) -> (u64, String, Value) {
    let headers = headers.expect("an event message without headers");
    let seq = headers
        .get("Pulse-Seq")
        .expect("no Pulse-Seq header")
        .as_str()
        .parse()
        .unwrap();
    let id = headers
        .get("Nats-Msg-Id")
        .expect("no Nats-Msg-Id header")
        .as_str()
        .to_owned();
    (seq, id, serde_json::from_slice(payload).unwrap())
}

/// The newest message the state stream holds for `subject`: its `seq` and its alert ids.
pub async fn stored_alerts(js: &async_nats::jetstream::Context, subject: &str) -> (u64, Vec<i64>) {
    let stream = js.get_stream("PULSE_STATE").await.unwrap();
    let stored = stream
        .get_last_raw_message_by_subject(subject)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&stored.payload).unwrap();
    (body["seq"].as_u64().unwrap(), alert_ids(&body))
}

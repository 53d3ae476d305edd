//! Fixtures: a migrated database of its own with a seeded tenant, and the web service on port 0.

use std::net::SocketAddr;
use std::path::PathBuf;

use pulse_test_support::jwt::SECRET;
use pulse_test_support::{Deployed, ScratchDb, eventually, parse_config, unique};
use pulse_web::WebConfig;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use pulse_test_support::loopback_proxy;

pub const PUBLISH_TOKEN: &str = "publish-token-publish-token-publish";
pub const PASSWORD: &str = "correct horse battery";

pub struct Env {
    /// The test's own database, dropped with the environment.
    pub db: ScratchDb,
    pub pool: PgPool,
    pub addr: SocketAddr,
    /// Where the instance serves `/healthz`, `/readyz` and `/metrics`.
    pub ops_addr: SocketAddr,
    pub tenant: String,
    pub other_tenant: String,
    pub root: PathBuf,
    /// The configuration the service was started with, for starting more instances.
    pub config: WebConfig,
    stop: CancellationToken,
}

/// A database with two seeded tenants (3 devices each, users admin@/viewer@<tenant>.example),
/// a dashboard folder, and the web service.
pub async fn spawn() -> Env {
    spawn_with(|_| {}).await
}

/// [`spawn`], with the service's configuration adjusted by `configure` first.
pub async fn spawn_with(configure: impl FnOnce(&mut WebConfig)) -> Env {
    let db = ScratchDb::migrated("web").await;
    let url = db.url.clone();
    spawn_on(db, &url, configure).await
}

/// [`spawn`] on a database set up as deployed ([`Deployed`]), the service logged in as a member
/// of only `pulse_web` and `pulse_tenant`.
pub async fn spawn_deployed() -> Env {
    let deployed = Deployed::create("webdeployed").await;
    spawn_on(deployed.db, &deployed.web_url, |_| {}).await
}

/// [`spawn`] on the migrated `db`, which the service reaches at `url`; seeded as the server's
/// superuser (as outside writers create tenants and users).
async fn spawn_on(db: ScratchDb, url: &str, configure: impl FnOnce(&mut WebConfig)) -> Env {
    let pool = db.pool.clone();
    let tenant = unique("web");
    let other_tenant = unique("webother");
    let sim: pulse_simulator::SimulateArgs = parse_config(&[
        "s",
        "--tenants",
        &format!("{tenant},{other_tenant}"),
        "--devices",
        "3",
        "--sites",
        "1",
        "--password",
        PASSWORD,
    ]);
    pulse_simulator::seed(&pool, &sim).await.unwrap();

    let root = std::env::temp_dir().join(unique("pulse-web-root"));
    std::fs::create_dir_all(root.join("assets")).unwrap();
    std::fs::write(
        root.join("index.html"),
        "<!doctype html><title>Pulse</title><script type=module src=/assets/app.js></script>",
    )
    .unwrap();
    std::fs::write(
        root.join("assets/app.js"),
        format!("console.log({:?});", "x".repeat(4096)),
    )
    .unwrap();

    let mut config: WebConfig = parse_config(&[
        "pulse-web",
        "--database-url",
        url,
        "--jwt-secret",
        SECRET,
        "--publish-token",
        PUBLISH_TOKEN,
    ]);
    config.web_root = root.clone();
    config.gateway_urls = vec!["ws://127.0.0.1:1/api/v2/ws".into()];
    configure(&mut config);
    let stop = CancellationToken::new();
    let (addr, ops_addr) = serve(config.clone(), &stop).await;
    Env {
        db,
        pool,
        addr,
        ops_addr,
        tenant,
        other_tenant,
        root,
        config,
        stop,
    }
}

/// Starts a web service on port 0 (its ops endpoints on another) and waits until it answers;
/// it stops with `stop`. Returns both addresses.
async fn serve(config: WebConfig, stop: &CancellationToken) -> (SocketAddr, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ops_addr = ops_listener.local_addr().unwrap();
    tokio::spawn(pulse_web::run(
        config,
        listener,
        ops_listener,
        stop.clone().cancelled_owned(),
    ));
    eventually(
        &format!("the web service at {addr} answering"),
        std::time::Duration::from_secs(10),
        || async move {
            reqwest::get(format!("http://{ops_addr}/healthz"))
                .await
                .is_ok()
        },
    )
    .await;
    (addr, ops_addr)
}

impl Env {
    pub fn at(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `path` on the ops port.
    pub fn ops(&self, path: &str) -> String {
        format!("http://{}{path}", self.ops_addr)
    }

    /// Another web service instance with the same configuration and database (as behind a
    /// load balancer); stopped by [`Env::finish`]. Returns its base URL.
    pub async fn another_instance(&self) -> String {
        format!("http://{}", serve(self.config.clone(), &self.stop).await.0)
    }

    /// A client with a cookie jar, logged in as `who@<tenant>.example`.
    pub async fn login(&self, who: &str, tenant: &str) -> reqwest::Client {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let r = self
            .post_login(&client, &format!("{who}@{tenant}.example"), PASSWORD)
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        client
    }

    /// `POST /api/v2/login` with `email` and `password`, as `client`, whatever the answer.
    pub async fn post_login(
        &self,
        client: &reqwest::Client,
        email: &str,
        password: &str,
    ) -> reqwest::Response {
        let body = serde_json::json!({"email": email, "password": password});
        post_json(client, self.at("/api/v2/login"), &body).await
    }

    /// `POST /api/v2/events` with `body`, as `client` (a logged-in user's session).
    pub async fn post_event(
        &self,
        client: &reqwest::Client,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        post_json(client, self.at("/api/v2/events"), body).await
    }

    /// `POST /api/v2/events` with `body`, as a backend presenting `token` as its bearer.
    pub async fn publish_as(&self, token: &str, body: &serde_json::Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.at("/api/v2/events"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `POST /api/v2/publish-keys` for a key named `name`, as `admin`: the JSON answer, whatever
    /// its status.
    pub async fn create_publish_key(
        &self,
        admin: &reqwest::Client,
        name: &str,
    ) -> serde_json::Value {
        let body = serde_json::json!({"name": name});
        post_json(admin, self.at("/api/v2/publish-keys"), &body)
            .await
            .json()
            .await
            .unwrap()
    }

    /// Runs `sql` on the service's database with `params` bound as text, as a test's setup.
    pub async fn execute(&self, sql: &str, params: &[&str]) {
        let mut query = sqlx::query(sql);
        for param in params {
            query = query.bind(*param);
        }
        if let Err(e) = query.execute(&self.pool).await {
            panic!("{sql}: {e}");
        }
    }

    /// Whether some session of the service's database waits for a lock.
    pub async fn lock_waited_for(&self) -> bool {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
              WHERE datname = current_database() AND wait_event_type = 'Lock')",
        )
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// Holds `table` locked (ACCESS EXCLUSIVE) until the returned transaction ends: a request
    /// that reads it waits, with its database connection.
    pub async fn lock(&self, table: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
        let mut tx = self.pool.begin().await.unwrap();
        let sql = format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE");
        if let Err(e) = sqlx::query(&sql).execute(&mut *tx).await {
            panic!("{sql}: {e}");
        }
        tx
    }

    /// Stops the instances and removes the dashboard folder, as dropping it does.
    pub async fn finish(self) {
        drop(self);
    }
}

/// Also when a test fails before [`Env::finish`]: a panicking test leaves no instance
/// running and no folder behind.
impl Drop for Env {
    fn drop(&mut self) {
        self.stop.cancel();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Asserts the JSON error shape and returns its code.
pub async fn error_code(r: reqwest::Response, status: u16) -> String {
    assert_eq!(r.status(), status);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    v["error"]["code"].as_str().unwrap().to_owned()
}

/// The status of an anonymous `GET url`.
pub async fn status_of(url: String) -> u16 {
    reqwest::get(url).await.unwrap().status().as_u16()
}

/// `GET url`.
pub async fn get(client: &reqwest::Client, url: String) -> reqwest::Response {
    client.get(url).send().await.unwrap()
}

/// The JSON body of `GET url`, whatever its status.
pub async fn get_json(client: &reqwest::Client, url: String) -> serde_json::Value {
    get(client, url).await.json().await.unwrap()
}

/// `POST url` with `body` sent as it is, labelled JSON: for bodies that are not JSON, or too
/// large to build as a value.
pub async fn post_raw_json(
    client: &reqwest::Client,
    url: String,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// `POST url` with `body` as JSON.
pub async fn post_json(
    client: &reqwest::Client,
    url: String,
    body: &serde_json::Value,
) -> reqwest::Response {
    client.post(url).json(body).send().await.unwrap()
}

//! Fixtures: a fresh database per test and unique tenant ids.

use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

pub fn base_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A short random token for names that must not collide between tests and runs.
pub fn unique(label: &str) -> String {
    let n: u64 = rand::random();
    format!("{label}-{:010x}", n & 0xff_ffff_ffff)
}

/// Replaces the database name in a PostgreSQL URL.
pub fn with_database(url: &str, db: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let scheme_end = head.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => head,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A database of its own, dropped by [`TestDb::drop_now`] (or by the next `make test`, which
/// drops leftovers).
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    /// A fresh database with every migration applied.
    pub async fn new() -> TestDb {
        let db = TestDb::empty().await;
        pulse_db::migrate(&db.pool).await.unwrap();
        db
    }

    /// A fresh database with nothing in it.
    pub async fn empty() -> TestDb {
        let name = unique("pulse_t").replace('-', "_");
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&base_database_url())
            .await
            .expect("PostgreSQL must be reachable at DATABASE_URL (run `make test`)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let url = with_database(&base_database_url(), &name);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .unwrap();
        TestDb { name, url, pool }
    }

    pub async fn drop_now(self) {
        self.pool.close().await;
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&base_database_url())
            .await
            .unwrap();
        let _ = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&admin)
        .await;
    }

    /// Creates a tenant with `devices` devices `dev-1`… on site `site-1`; returns its id.
    pub async fn tenant(&self, label: &str, devices: usize) -> String {
        let tenant = unique(label);
        sqlx::query("INSERT INTO tenants (tenant_id, name) VALUES ($1, $1)")
            .bind(&tenant)
            .execute(&self.pool)
            .await
            .unwrap();
        for i in 1..=devices {
            sqlx::query(
                "INSERT INTO devices (tenant_id, device_id, site_id, battery_pct) \
                 VALUES ($1, $2, 'site-1', 80)",
            )
            .bind(&tenant)
            .bind(format!("dev-{i}"))
            .execute(&self.pool)
            .await
            .unwrap();
        }
        tenant
    }

    pub async fn open_alert(&self, tenant: &str, device: &str, summary: &str) -> i64 {
        sqlx::query_scalar(
            "INSERT INTO alerts (tenant_id, device_id, site_id, alert_type, severity, summary) \
             VALUES ($1, $2, 'site-1', 'temp_high', 4, $3) RETURNING alert_id",
        )
        .bind(tenant)
        .bind(device)
        .bind(summary)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    pub async fn reading(&self, tenant: &str, device: &str, metrics: Value) {
        sqlx::query(
            "INSERT INTO telemetry (tenant_id, device_id, ts, metrics) VALUES ($1, $2, now(), $3)",
        )
        .bind(tenant)
        .bind(device)
        .bind(sqlx::types::Json(metrics))
        .execute(&self.pool)
        .await
        .unwrap();
    }
}

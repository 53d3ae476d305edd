//! PostgreSQL over TLS: what `DATABASE_URL` asks for (`sslmode`, and `sslrootcert`,
//! `sslcert`, `sslkey` alike) holds for every connection the poller opens — its pool, its
//! LISTEN connection and its leadership lock — not only the first.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn every_connection_of_the_poller_is_encrypted_when_the_url_asks_for_it() {
    for (sslmode, ssl) in [("require", true), ("disable", false)] {
        let (db, tenant, [mut alerts]) = watched_tenant("pgtls", 1, ["alerts"]).await;
        let mut config = config(&db);
        config.database_url = pulse_test_support::env::with_params(
            &db.url,
            &format!("sslmode={sslmode}&application_name=pulse-tls"),
        );
        let poller = spawn_poller(config).await;
        poller.wait_active().await;
        alerts.until(Duration::from_secs(10), |_| true).await;
        exec(
            &db,
            "INSERT INTO alerts (tenant_id, device_id, site_id, alert_type, severity, summary) \
             VALUES ($1, 'dev-1', 'site-1', 'temp_high', 3, 'seen')",
            &tenant,
        )
        .await;
        // Through the LISTEN connection: the poll interval is far longer than the wait.
        alerts
            .until(Duration::from_secs(10), |m| {
                m["alerts"][0]["summary"] == "seen"
            })
            .await;
        let seen = db
            .connections_encrypted(&["pulse-tls", "pulse-poller-leader"])
            .await;
        for name in ["pulse-tls", "pulse-poller-leader"] {
            assert!(
                seen.iter().any(|(n, _)| n == name),
                "no {name} connection: {seen:?}"
            );
        }
        assert!(
            seen.iter().all(|(_, encrypted)| *encrypted == ssl),
            "sslmode={sslmode}: {}",
            json!(seen)
        );
    }
}

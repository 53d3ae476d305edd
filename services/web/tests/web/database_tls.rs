//! PostgreSQL over TLS: what `DATABASE_URL` asks for (`sslmode`, and `sslrootcert`,
//! `sslcert`, `sslkey` alike) holds for the web service's request pool and for the
//! connection its readiness check keeps of its own.

use crate::helpers::*;

#[tokio::test]
async fn every_connection_of_the_web_service_is_encrypted_when_the_url_asks_for_it() {
    for (sslmode, ssl) in [("require", true), ("disable", false)] {
        let env = spawn_with(|c| {
            let params = format!("sslmode={sslmode}&application_name=pulse-tls");
            c.database.url = pulse_test_support::env::with_params(&c.database.url, &params);
        })
        .await;
        let c = env.login("viewer", &env.tenant).await;
        let page = get_json(&c, env.at("/api/v2/alerts")).await;
        assert!(page["items"].is_array(), "{page}");
        let ready = reqwest::get(format!("http://{}/readyz", env.ops_addr))
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
        let seen = env.db.connections_encrypted(&["pulse-tls"]).await;
        assert!(seen.len() >= 2, "the pool's and the check's: {seen:?}");
        assert!(
            seen.iter().all(|(_, encrypted)| *encrypted == ssl),
            "sslmode={sslmode}: {seen:?}"
        );
        env.finish().await;
    }
}

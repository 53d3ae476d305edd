//! Serving the dashboard: headers, caching, compression, the single-page fallback, ops.

use crate::helpers::*;

#[tokio::test]
async fn the_dashboard_is_served_with_security_cache_and_compression_headers() {
    let env = spawn().await;
    let client = reqwest::Client::new();
    let r = client.get(env.at("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-cache");
    assert!(r.text().await.unwrap().contains("<title>Pulse</title>"));

    let r = client
        .get(env.at("/assets/app.js"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(r.headers()["content-encoding"], "gzip");

    // Client-side routes get the app; unknown API paths get JSON.
    let r = client
        .get(env.at("/devices/dev-0001"))
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("<title>Pulse</title>"));
    let r = client
        .get(env.at("/api/v2/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 404).await, "not_found");
    env.finish().await;
}

#[tokio::test]
async fn ops_endpoints_answer() {
    let env = spawn().await;
    assert_eq!(
        reqwest::get(env.at("/healthz")).await.unwrap().status(),
        200
    );
    let mut ready = 0;
    for _ in 0..100 {
        ready = reqwest::get(env.at("/readyz"))
            .await
            .unwrap()
            .status()
            .as_u16();
        if ready == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(ready, 200);
    reqwest::get(env.at("/api/v2/fleet")).await.unwrap();
    let metrics = reqwest::get(env.at("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("pulse_web_requests_total{route=\"/api/v2/fleet\",status=\"401\"}"),
        "{metrics}"
    );
    env.finish().await;
}

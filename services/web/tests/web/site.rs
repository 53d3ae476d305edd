//! Serving the dashboard: headers, caching, compression, the single-page fallback, ops.

use pulse_test_support::eventually;

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
    // Every answer says the server's time: the dashboard counts "x s ago" on it.
    let me = client.get(env.at("/api/v2/me")).send().await.unwrap();
    let date = me.headers()["date"].to_str().unwrap().to_owned();
    let year = time::OffsetDateTime::now_utc().year().to_string();
    assert!(date.ends_with(" GMT") && date.contains(&year), "{date}");

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

    // An asset this build does not have (a page of an older or newer build asking, during a
    // rollout) is a 404 nobody keeps, never the app's page cached for a year as that asset.
    let r = client
        .get(env.at("/assets/app-0123abcd.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["cache-control"], "no-cache");

    // A directory is neither listed nor redirected to with a slash added: `//assets` would
    // send the browser to the host `assets`.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in ["//assets", "/assets", "/assets/"] {
        let r = plain.get(env.at(path)).send().await.unwrap();
        assert!(!r.status().is_redirection(), "{path}: {}", r.status());
        assert!(r.headers().get("location").is_none(), "{path}");
    }

    // Client-side routes get the app; unknown API paths get JSON.
    let r = get(&client, env.at("/devices/dev-0001")).await;
    assert!(r.text().await.unwrap().contains("<title>Pulse</title>"));
    let r = get(&client, env.at("/api/v2/nothing-here")).await;
    assert_eq!(error_code(r, 404).await, "not_found");
    env.finish().await;
}

#[tokio::test]
async fn ops_endpoints_answer_on_the_ops_port_only() {
    let env = spawn().await;
    assert_eq!(status_of(env.ops("/healthz")).await, 200);
    let mut ready = 0;
    for _ in 0..100 {
        ready = status_of(env.ops("/readyz")).await;
        if ready == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(ready, 200);
    reqwest::get(env.at("/api/v2/fleet")).await.unwrap();
    let metrics = reqwest::get(env.ops("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("pulse_web_requests_total{route=\"/api/v2/fleet\",status=\"401\"}"),
        "{metrics}"
    );
    for process in [
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(process)),
            "{process}missing: {metrics}"
        );
    }
    // The public port, which serves the dashboard to anyone, does not expose them.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = reqwest::get(env.at(path)).await.unwrap();
        assert_eq!(error_code(r, 404).await, "not_found", "{path}");
    }
    // Nor does the ops port serve the dashboard or the API.
    assert_eq!(status_of(env.ops("/api/v2/fleet")).await, 404);
    env.finish().await;
}

#[tokio::test]
async fn the_csp_allows_connections_only_to_the_configured_gateways_and_https_gets_hsts() {
    let env = spawn_with(|c| {
        c.gateway_urls = vec![
            "wss://gw-1.example.com/api/v2/ws".into(),
            "wss://gw-2.example.com:8443/api/v2/ws".into(),
        ];
        c.cookie_secure = true;
    })
    .await;
    let r = reqwest::get(env.at("/")).await.unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("connect-src 'self' wss://gw-1.example.com wss://gw-2.example.com:8443;"),
        "{csp}"
    );
    assert!(!csp.contains(" ws:") && !csp.contains(" wss:;"), "{csp}");
    assert_eq!(
        r.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    env.finish().await;

    let plain = spawn().await;
    let r = reqwest::get(plain.at("/")).await.unwrap();
    assert!(!r.headers().contains_key("strict-transport-security"));
    plain.finish().await;
}

#[tokio::test]
async fn a_hung_request_gets_408_and_requests_beyond_the_limit_get_503() {
    let env = spawn_with(|c| {
        c.http_timeout = std::time::Duration::from_secs(1);
        c.http_max_in_flight = 1;
    })
    .await;
    let client = env.login("admin", &env.tenant).await;
    // Hold a lock the events read needs, so the request hangs.
    let tx = env.lock("event_topics").await;
    let hung = {
        let client = client.clone();
        let url = env.at("/api/v2/events?topic=tickets");
        tokio::spawn(async move { client.get(url).send().await.unwrap() })
    };
    // While it hangs, the one slot is taken: another request is refused at once.
    let mut refused = None;
    for _ in 0..50 {
        let r = reqwest::get(env.at("/api/v2/openapi.json")).await.unwrap();
        if r.status() == 503 {
            refused = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let refused = refused.expect("a second request while one is in flight must get 503");
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(error_code(refused, 503).await, "busy");
    // Both answer with the API's JSON error, as every other failure does.
    assert_eq!(error_code(hung.await.unwrap(), 408).await, "timeout");
    tx.rollback().await.unwrap();
    assert_eq!(status_of(env.at("/api/v2/openapi.json")).await, 200);
    env.finish().await;
}

#[tokio::test]
async fn a_request_head_sent_too_slowly_is_cut_off() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // A client sending its headers a byte at a time (or not at all) would otherwise hold its
    // connection, and a file descriptor, for good: the request deadline only starts once the
    // head has arrived.
    let env = spawn().await;
    let mut slow = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: pul")
        .await
        .unwrap();
    let limit = pulse_common::http_server::HEADER_READ_TIMEOUT + std::time::Duration::from_secs(5);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(limit, slow.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "a half-sent request head still held its connection after {limit:?}"
    );
    assert!(rest.is_empty(), "answered a request never sent whole");
    // Everyone else is still served.
    assert_eq!(status_of(env.at("/")).await, 200);
    env.finish().await;
}

/// A browser's request from another origin changes nothing: 403 before it is read. A sibling
/// subdomain is the same site, so its requests carry the `SameSite=Strict` cookie; only the
/// browser's `Sec-Fetch-Site` tells them apart.
#[tokio::test]
async fn a_browsers_request_from_another_origin_changes_nothing() {
    let env = spawn().await;
    let admin = env.login("admin", &env.tenant).await;
    let key = |site: Option<&str>| {
        let mut r = admin
            .post(env.at("/api/v2/publish-keys"))
            .json(&serde_json::json!({"name": "k"}));
        if let Some(site) = site {
            r = r.header("sec-fetch-site", site);
        }
        r.send()
    };
    let logout = |site: &str| {
        admin
            .post(env.at("/api/v2/logout"))
            .header("sec-fetch-site", site)
            .send()
    };
    for site in ["same-site", "cross-site"] {
        assert_eq!(
            error_code(key(Some(site)).await.unwrap(), 403).await,
            "forbidden"
        );
        assert_eq!(
            error_code(logout(site).await.unwrap(), 403).await,
            "forbidden"
        );
    }
    let keys = get_json(&admin, env.at("/api/v2/publish-keys")).await;
    assert_eq!(keys["items"], serde_json::json!([]), "no key was made");
    // The dashboard's own requests, and a backend's (no such header), go through.
    assert_eq!(key(Some("same-origin")).await.unwrap().status(), 201);
    assert_eq!(key(None).await.unwrap().status(), 201);
    assert_eq!(logout("same-origin").await.unwrap().status(), 204);
    env.finish().await;
}

/// An instance whose every database connection is busy stays ready: the database answers, the
/// instance is loaded. Unready, every instance would leave the load balancer at once under a
/// spike, and the ingress answer 503 to everything.
#[tokio::test]
async fn an_instance_with_every_database_connection_busy_stays_ready() {
    let env = spawn_with(|c| c.db_pool_size = 1).await;
    let ready = || async { status_of(env.ops("/readyz")).await == 200 };
    eventually("ready", std::time::Duration::from_secs(10), ready).await;
    let viewer = env.login("viewer", &env.tenant).await;
    // A request waits on a lock the test holds, with the pool's one connection.
    let lock = env.lock("sessions").await;
    let me = env.at("/api/v2/me");
    let waiting = tokio::spawn(async move { get(&viewer, me).await.status() });
    // Checked over the pool's 5 s wait for a connection, and then some: ready throughout.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(9);
    while std::time::Instant::now() < until {
        assert!(ready().await, "unready while the pool is busy");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    lock.rollback().await.unwrap();
    assert_eq!(waiting.await.unwrap(), 200);
    env.finish().await;
}

/// An instance whose database goes away turns unready, and ready again once it is back: cut
/// (connections closed, new ones refused: the pool reports that as a timed-out wait, as it
/// does a busy pool) or partitioned (nothing answers, nothing is closed), each while requests
/// hold the pool's connections waiting for it.
#[tokio::test]
async fn an_instance_whose_database_goes_away_turns_unready_until_it_is_back() {
    use pulse_test_support::proxy::{Link, Proxy};
    let (_, upstream) = pulse_test_support::through(&pulse_test_support::base_database_url(), 0);
    let proxy = Proxy::to(upstream).await;
    let env = spawn_with(|c| {
        c.database.url = pulse_test_support::through(&c.database.url, proxy.port).0;
        c.db_pool_size = 1;
    })
    .await;
    let viewer = env.login("viewer", &env.tenant).await;
    let ready = |expected: u16| {
        let url = env.ops("/readyz");
        async move { status_of(url).await == expected }
    };
    let wait = std::time::Duration::from_secs(20);
    eventually("ready", wait, || ready(200)).await;
    for away in [Link::Cut, Link::Frozen] {
        proxy.set(away);
        let (viewer, me) = (viewer.clone(), env.at("/api/v2/me"));
        let _waiting = tokio::spawn(async move { viewer.get(me).send().await });
        eventually(&format!("unready while {away:?}"), wait, || ready(503)).await;
        proxy.set(Link::Open);
        eventually("ready again", wait, || ready(200)).await;
    }
    env.finish().await;
}

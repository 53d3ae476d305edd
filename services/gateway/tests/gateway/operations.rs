//! Running it: caps, idle clients, drain, NATS restarts, leaks, and the whole pipeline from
//! SQL to WebSocket.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn connection_caps_refuse_with_4029_and_503() {
    let gw = spawn_gateway_with(|c| {
        c.max_connections_per_tenant = 2;
        c.max_connections = 3;
    })
    .await;
    let tenant = unique("caps");
    let _a = gw.viewer(&tenant).await;
    let mut b = gw.viewer(&tenant).await;
    b.assert_alive().await;
    let mut third = gw.viewer(&tenant).await;
    let closed = third.closed(T).await;
    assert_eq!(closed.code, 4029);
    assert!(closed.reason.contains("tenant"), "{closed:?}");
    let mut other = gw.viewer(&unique("caps-other")).await;
    other.assert_alive().await;
    // The instance is full: refused before the upgrade, told when to try again.
    assert_upgrade_refused_for_now(&gw.url(&viewer_token(&unique("x"), 60))).await;
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_idle_timeout() {
    let gw = spawn_gateway_with(|c| {
        c.ping_interval = Duration::from_secs(3);
        c.idle_timeout = Duration::from_secs(4);
    })
    .await;
    let mut c = gw.viewer(&unique("idle")).await;
    // Not reading means not answering pings: after the timeout the server gives up, at the
    // timeout itself, not at the next ping after it (6 s here).
    let started = Instant::now();
    eventually("connection released", Duration::from_secs(10), || async {
        metric(&gw.metrics().await, "pulse_gateway_connections", &[]) == 0.0
    })
    .await;
    let took = assert_took_less_than(Duration::from_millis(5500), started, "idle close");
    assert!(
        took >= Duration::from_millis(3800),
        "closed early: {took:?}"
    );
    let closed = c.closed(T).await;
    assert_eq!(closed.code, 1001);
}

#[tokio::test]
async fn sigterm_drains_clients_with_1012_and_refuses_new_ones() {
    let gw = spawn_gateway_with(|c| c.drain = std::time::Duration::from_secs(2)).await;
    let tenant = unique("drain");
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(gw.viewer(&tenant).await);
    }
    let addr = gw.addr;
    let started = Instant::now();
    gw.begin_shutdown();
    answers_with(addr, "/readyz", 503, T).await;
    // A draining gateway accepts no new clients, and says to try again (elsewhere) at once.
    assert_upgrade_refused_for_now(&format!(
        "ws://{addr}/api/v2/ws?token={}",
        viewer_token(&tenant, 60)
    ))
    .await;
    // Every client is watched at once, so each close is timed when it arrives, not when a
    // sequential loop gets round to it.
    let closes = futures::future::join_all(clients.iter_mut().map(|c| async move {
        let closed = c.closed(Duration::from_secs(5)).await;
        (closed.code, started.elapsed())
    }))
    .await;
    let mut at = Vec::new();
    for (code, elapsed) in closes {
        assert_eq!(code, 1012);
        at.push(elapsed);
    }
    at.sort();
    assert!(
        at[at.len() - 1] <= Duration::from_secs(4),
        "drain took {:?}",
        at[at.len() - 1]
    );
    assert!(
        at[at.len() - 1] - at[0] > Duration::from_millis(200),
        "closes should be spread: {at:?}"
    );
    gw.stopped().await.unwrap();
}

#[tokio::test]
async fn no_leak_after_many_connect_subscribe_disconnect_cycles() {
    let gw = spawn_gateway(config()).await;
    let tenant = unique("churn");
    register_devices(&tenant, (0..7).map(|d| format!("d{d}"))).await;
    let token = viewer_token(&tenant, 600);
    let url = gw.url(&token);
    // Four clients churn at once: connect, subscribe (to subjects shared between workers, so
    // NATS subscriptions are created and released concurrently), then leave abruptly or politely.
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let url = url.clone();
            tokio::spawn(async move {
                for i in 0..500 {
                    let mut c = connect(&url).await;
                    c.subscribe(
                        json!({"type": "device", "device_id": format!("d{}", (i + w) % 7)}),
                    )
                    .await;
                    if i % 2 == 0 {
                        drop(c);
                    } else {
                        let _ = c.ws.close(None).await;
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    eventually("everything released", Duration::from_secs(10), || async {
        let m = gw.metrics().await;
        metric(&m, "pulse_gateway_connections", &[]) == 0.0
            && metric(&m, "pulse_gateway_subscriptions", &[]) == 0.0
            && metric(&m, "pulse_gateway_nats_subscriptions", &[]) == 0.0
    })
    .await;
}

#[tokio::test]
async fn an_alert_inserted_by_sql_reaches_the_browser_side_quickly() {
    let db = ScratchDb::migrated("gw").await;
    let tenant = db.tenant("e2e", 1).await;
    let mut pc: pulse_poller::PollerConfig =
        pulse_test_support::parse_config(&["p", "--database-url", &db.url]);
    pc.nats.url = nats_url();
    pc.poll_interval = std::time::Duration::from_secs(60);
    pc.telemetry_interval = std::time::Duration::from_millis(50);
    let poller = spawn_poller(pc).await;

    let gw = spawn_gateway(config()).await;
    let mut c = gw.viewer(&tenant).await;
    c.subscribe(json!({"type": "alerts"})).await;
    // The poller publishes every tenant's snapshot at start; wait for the empty one.
    c.until(Duration::from_secs(15), |m| {
        m["type"] == "alerts" && m["alerts"] == json!([])
    })
    .await;
    // The device is subscribable once the poller listed it in the device registry.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = c
            .subscribe(json!({"type": "device", "device_id": "dev-1"}))
            .await;
        if r["type"] == "subscribed" {
            break;
        }
        assert_eq!(r["code"], "unknown_device", "{r}");
        assert!(Instant::now() < deadline, "dev-1 never became subscribable");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let started = Instant::now();
    let id = db
        .open_alert(&tenant, "dev-1", "<script>alert(1)</script>")
        .await;
    let pushed = c
        .until(T, |m| {
            m["type"] == "alerts" && m["alerts"][0]["alert_id"] == id
        })
        .await;
    assert_took_less_than(Duration::from_millis(500), started, "SQL -> WebSocket");
    assert_eq!(pushed["alerts"][0]["summary"], "<script>alert(1)</script>");

    db.reading(&tenant, "dev-1", json!({"temp_c": 30})).await;
    let reading = c.until(T, |m| m["type"] == "telemetry").await;
    assert_eq!(reading["data"]["metrics"]["temp_c"], 30);

    poller.stop().await;
}

#[tokio::test]
async fn a_nats_restart_keeps_websockets_and_resends_the_current_snapshot() {
    let mut server = PrivateNats::start().await;
    let url = server.url.clone();
    let tenant = unique("natsrestart");
    let publisher = async_nats::connect(&url).await.unwrap();
    retain_alerts(&publisher, &tenant, 10, "before").await;

    let gw = spawn_gateway_with(|c| c.nats.url = url.clone()).await;
    let mut c = connect(&gw.url(&viewer_token(&tenant, 120))).await;
    c.subscribe(json!({"type": "alerts"})).await;
    assert_eq!(c.next(T).await["v"], "before");

    let addr = gw.addr;
    let streams_shown = |want: &'static str| async move {
        eventually(
            &format!("the state stream shown {want}"),
            Duration::from_secs(10),
            || async {
                let info = readyz(addr).await.1["info"].clone();
                info["stream_pulse_state"] == want
            },
        )
        .await;
    };
    streams_shown("readable").await;

    server.stop().await;
    // Not ready while NATS is gone; the streams are not asked meanwhile (NATS is the trouble).
    answers_with(addr, "/readyz", 503, Duration::from_secs(10)).await;
    streams_shown("unknown: NATS is not connected").await;
    // A subject not in use yet cannot be started while NATS is gone: where it stands is
    // unknown, and what is published meanwhile would be missed unannounced. The client is told
    // at once to retry, and the connection stays.
    let during = json!({"type": "events", "topic": "during-outage"});
    let asked = std::time::Instant::now();
    let refused = c.subscribe(during.clone()).await;
    assert_eq!(
        (refused["code"].as_str(), refused["topic"].as_str()),
        (Some("unavailable"), Some("during-outage")),
        "{refused}"
    );
    assert!(asked.elapsed() < Duration::from_secs(2));
    // Meanwhile the state changed (written straight to the restarted server's stream below).
    let back = std::time::Instant::now();
    server.start_again().await;
    let publisher = async_nats::connect(&url).await.unwrap();
    retain_alerts(&publisher, &tenant, 11, "after").await;
    let got = c.until(Duration::from_secs(5), |m| m["v"] == "after").await;
    eprintln!(
        "measured: NATS restarted -> the client has the newest snapshot: {:?}",
        back.elapsed()
    );
    assert_eq!(got["seq"], 11);
    // Asked again as soon as NATS is back.
    streams_shown("readable").await;
    // Asked again once NATS is back, as `unavailable` says: it works.
    c.assert_subscribes(during).await;
    let events = format!("pulse.v1.{tenant}.events.during-outage");
    let mut delivered = None;
    for n in 1..=50u64 {
        publish(
            &publisher,
            &events,
            n,
            json!({"type": "event", "topic": "during-outage", "event": "x", "payload": {}}),
        )
        .await;
        if let Some(m) = c.try_next(Duration::from_millis(200)).await {
            delivered = Some(m);
            break;
        }
    }
    let delivered = delivered.expect("no event on the subscription made during the outage");
    assert_eq!(delivered["topic"], "during-outage", "{delivered}");
    c.assert_alive().await;
}

#[tokio::test]
async fn without_nats_the_gateway_answers_health_and_refuses_websockets_with_503() {
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let mut cfg = config();
    cfg.nats.url = url.clone();
    // No NATS at all yet: the gateway still starts.
    let (addr, stop, _gateway) =
        run_in_process(|listener, stop| pulse_gateway::run(cfg, listener, stop)).await;
    let _stop = stop.drop_guard();
    answers_with(addr, "/healthz", 200, Duration::from_secs(5)).await;
    let ready = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["nats"], false, "{body}");
    let tenant = unique("nonats");
    let ws_url = format!("ws://{addr}/api/v2/ws?token={}", viewer_token(&tenant, 60));
    assert_upgrade_refused_for_now(&ws_url).await;

    // NATS arrives: ready, and clients are served.
    let _server = start_nats_server(port, &[], &[]);
    let started = std::time::Instant::now();
    answers_with(addr, "/readyz", 200, Duration::from_secs(15)).await;
    eprintln!(
        "measured: NATS started -> gateway ready: {:?}",
        started.elapsed()
    );
    let mut c = connect(&ws_url).await;
    c.subscribe(json!({"type": "events", "topic": "tickets"}))
        .await;
    let nats = connect_nats(&url).await.unwrap();
    publish_live_event(&nats, &tenant, "tickets", 1).await;
    assert_eq!(c.next(T).await["seq"], 1);
}

#[tokio::test]
async fn a_gateway_stops_promptly_while_nats_is_down() {
    let port = free_port();
    let mut server = start_nats_server(port, &[], &[]);
    let gw = spawn_gateway_with(|c| {
        c.nats.url = format!("nats://127.0.0.1:{port}");
        c.drain = std::time::Duration::from_secs(0);
    })
    .await;
    let addr = gw.addr;
    server.kill().await.unwrap();
    answers_with(addr, "/readyz", 503, Duration::from_secs(10)).await;
    // A stop must not wait for NATS to come back (it would wait for ever).
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), gw.stopped())
        .await
        .expect("the gateway did not stop within 10 s")
        .unwrap();
    assert_took_less_than(Duration::from_secs(5), started, "a stop while NATS is down");
}

#[tokio::test]
async fn readyz_and_a_gauge_say_whether_the_streams_answer_while_the_gateway_stays_ready() {
    // JetStream is there, the streams are not yet (as before the first poller starts).
    let server = PrivateNats::start().await;
    let url = server.url.clone();
    let gw = spawn_gateway_with(|c| c.nats.url = url.clone()).await;
    let addr = gw.addr;
    let wait = pulse_gateway::streams::CHECK_INTERVAL * 3;
    let shows = |stream: &'static str, key: &'static str, readable: bool| async move {
        eventually(
            &format!("{stream} shown readable={readable}"),
            wait,
            || async {
                let (status, body) = readyz(addr).await;
                let text = body["info"][key].as_str().unwrap_or_default().to_owned();
                let gauge = metric(
                    &pulse_test_support::scrape(addr).await,
                    "pulse_gateway_stream_readable",
                    &[&format!("stream=\"{stream}\"")],
                );
                // Whatever the streams do, the gateway serves live messages: it stays ready.
                assert_eq!((status, &body["ready"]), (200, &json!(true)), "{body}");
                if readable {
                    text == "readable" && gauge == 1.0
                } else {
                    text.starts_with("unreadable: ") && gauge == 0.0
                }
            },
        )
        .await;
    };
    shows("PULSE_STATE", "stream_pulse_state", false).await;
    shows("PULSE_EVENTS", "stream_pulse_events", false).await;
    shows("KV_PULSE_DEVICES", "stream_kv_pulse_devices", false).await;

    let js = async_nats::jetstream::new(connect_nats(&url).await.unwrap());
    ensure_streams(&js).await;
    shows("PULSE_STATE", "stream_pulse_state", true).await;
    shows("PULSE_EVENTS", "stream_pulse_events", true).await;
    shows("KV_PULSE_DEVICES", "stream_kv_pulse_devices", true).await;

    // The events stream goes away again (deleted by hand, lost with a JetStream node).
    js.delete_stream("PULSE_EVENTS").await.unwrap();
    shows("PULSE_EVENTS", "stream_pulse_events", false).await;
    shows("PULSE_STATE", "stream_pulse_state", true).await;

    // So does the device registry: device subscribes cannot be checked, and it shows.
    js.delete_stream("KV_PULSE_DEVICES").await.unwrap();
    shows("KV_PULSE_DEVICES", "stream_kv_pulse_devices", false).await;
    shows("PULSE_STATE", "stream_pulse_state", true).await;
}

#[tokio::test]
async fn with_an_ops_address_the_public_port_answers_no_ops_endpoint() {
    let (port, ops_port) = (free_port(), free_port());
    let public = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let ops = std::net::SocketAddr::from(([127, 0, 0, 1], ops_port));
    let gw = spawn_gateway_process_logging(
        port,
        &[
            ("PULSE_GATEWAY_OPS_ADDR", &ops.to_string()),
            ("PULSE_DRAIN_SECONDS", "4"),
        ],
        None,
    )
    .await;
    let tenant = unique("opsaddr");
    // Several clients: the drain closes each at a random moment within 4 s, so the instance
    // drains (and says so) for a while.
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(viewer_on_port(port, &tenant).await);
    }
    clients[0].assert_alive().await;
    // The metrics name tenants: they, and the probes, are on the ops address only.
    for path in ["/metrics", "/readyz", "/healthz"] {
        answers_with(public, path, 404, T).await;
    }
    answers_with(ops, "/healthz", 200, T).await;
    eventually("the tenant counted on the ops address", T, || async {
        let text = pulse_test_support::scrape(ops).await;
        metric(
            &text,
            "pulse_gateway_tenant_connections",
            &[&format!("tenant=\"{tenant}\"")],
        ) == 5.0
    })
    .await;

    // The image's health check asks the ops address when there is one.
    let healthcheck = |envs: Vec<(&'static str, String)>| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_pulse-gateway"))
            .arg("healthcheck")
            .env_remove("PULSE_GATEWAY_ADDR")
            .env_remove("PULSE_GATEWAY_OPS_ADDR")
            .envs(envs)
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .unwrap()
            .success()
    };
    assert!(
        healthcheck(vec![
            ("PULSE_GATEWAY_ADDR", public.to_string()),
            ("PULSE_GATEWAY_OPS_ADDR", ops.to_string()),
        ])
        .await
    );
    assert!(!healthcheck(vec![("PULSE_GATEWAY_ADDR", public.to_string())]).await);

    // Draining, the ops address says so until the instance is gone.
    pulse_test_support::signal(gw.id().unwrap(), "TERM");
    answers_with(ops, "/readyz", 503, T).await;
    for c in &mut clients {
        assert_eq!(c.closed(T).await.code, 1012);
    }
}

/// Started with the soft open-files limit a container runtime may leave (containerd 2 starts
/// processes at 1024), the gateway raises it to the hard limit: otherwise it would refuse
/// connections past about a thousand, far below `PULSE_MAX_CONNECTIONS`.
#[tokio::test]
async fn a_gateway_started_with_a_low_open_files_limit_raises_it_to_the_hard_one() {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let hard: u64 = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap();
    assert!(
        hard > 256,
        "this test needs a hard limit above 256, not {hard}"
    );
    let port = free_port();
    let mut gateway = tokio::process::Command::new("sh")
        .args(["-c", "ulimit -Sn 256 && exec \"$0\""])
        .arg(env!("CARGO_BIN_EXE_pulse-gateway"))
        .env("PULSE_GATEWAY_ADDR", format!("127.0.0.1:{port}"))
        .env("PULSE_JWT_SECRET", SECRET)
        .env("NATS_URL", nats_url())
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    answers_with(addr, "/readyz", 200, Duration::from_secs(20)).await;
    let text = pulse_test_support::scrape(addr).await;
    assert_eq!(metric(&text, "process_max_fds", &[]), hard as f64);
    gateway.kill().await.unwrap();
}

//! What one user, one address or one tenant may take of a gateway, and tickets that stay out
//! of URLs and logs.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

fn user_token(tenant: &str, sub: &str) -> String {
    sign(
        json!({"sub": sub, "tenant_id": tenant, "role": "customer_viewer", "exp": now() + 300, "kind": "ws"}),
    )
}

#[tokio::test]
async fn connections_are_capped_per_user() {
    let gw = spawn_gateway_with(|c| c.max_connections_per_user = 2).await;
    let tenant = unique("peruser");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = connect(&gw.url(&user_token(&tenant, "7"))).await;
        c.assert_alive().await;
        held.push(c);
    }
    let mut third = connect(&gw.url(&user_token(&tenant, "7"))).await;
    let refused = third.closed(T).await;
    assert_eq!(refused.code, 4029);
    // The reason tells the client how long to stay away.
    assert!(
        refused.reason.ends_with("retry_after=5"),
        "{}",
        refused.reason
    );
    // Authenticating by its first message, it hears the refusal only: no `authenticated`
    // that the close would then contradict.
    let mut by_message = connect(&gw.ws_url()).await;
    let token = user_token(&tenant, "7");
    by_message
        .send(json!({"action": "auth", "token": token}))
        .await;
    assert_eq!(by_message.closed_at_once(T).await.code, 4029);
    let mut other_user = connect(&gw.url(&user_token(&tenant, "8"))).await;
    other_user.assert_alive().await;
    // A closed one frees its place.
    drop(held.pop());
    eventually("a place freed", T, || async {
        let mut c = connect(&gw.url(&user_token(&tenant, "7"))).await;
        c.try_next(Duration::from_millis(200)).await.is_none()
            && tokio::time::timeout(Duration::from_secs(1), c.assert_alive())
                .await
                .is_ok()
    })
    .await;
}

#[tokio::test]
async fn a_connection_that_reauthenticates_as_another_user_counts_as_that_user() {
    let gw = spawn_gateway_with(|c| c.max_connections_per_user = 1).await;
    let tenant = unique("reauth_user");
    let mut seven = connect(&gw.url(&user_token(&tenant, "7"))).await;
    let mut moving = connect(&gw.url(&user_token(&tenant, "8"))).await;
    let auth = |sub: &str| json!({"action": "auth", "token": user_token(&tenant, sub)});
    // User 7 holds the one connection allowed: moving there is refused, the token stays.
    moving.send(auth("7")).await;
    let refused = moving.next(T).await;
    assert_eq!(refused["code"], "invalid_token", "{refused}");
    let mut second_eight = connect(&gw.url(&user_token(&tenant, "8"))).await;
    assert_eq!(second_eight.closed(T).await.code, 4029);
    // User 9 has room: the connection counts as 9 from now on, and 8's place is free.
    moving.send(auth("9")).await;
    assert_eq!(moving.next(T).await["type"], "authenticated");
    let mut eight = connect(&gw.url(&user_token(&tenant, "8"))).await;
    eight.assert_alive().await;
    let mut second_nine = connect(&gw.url(&user_token(&tenant, "9"))).await;
    assert_eq!(second_nine.closed(T).await.code, 4029);
    moving.assert_alive().await;
    seven.assert_alive().await;
}

#[tokio::test]
async fn connections_are_capped_per_client_address_or_ipv6_64_behind_trusted_proxies_only() {
    let gw = spawn_gateway_with(|c| {
        c.max_connections_per_address = 2;
        c.trusted_proxies = loopback_proxy();
    })
    .await;
    let tenant = unique("peraddr");
    let url = gw.url(&viewer_token(&tenant, 60));
    let _held = two_served_then_a_third_refused(&url, ["198.51.100.1"; 3]).await;
    let (mut b, _) = connect_with(&url, &forwarded_for("198.51.100.2")).await;
    b.assert_alive().await;
    // An IPv6 client is its /64: one host may send from any address of it.
    let one_64 = ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:a:b:c:d"];
    let _held = two_served_then_a_third_refused(&url, one_64).await;
    let (mut c, _) = connect_with(&url, &forwarded_for("2001:db8:1:3::1")).await;
    c.assert_alive().await;

    // Not behind a trusted proxy: the header is the client's own word.
    let plain = spawn_gateway_with(|c| c.max_connections_per_address = 2).await;
    let url = plain.url(&viewer_token(&tenant, 60));
    let addresses = ["198.51.100.3", "198.51.100.4", "198.51.100.5"];
    two_served_then_a_third_refused(&url, addresses).await;
}

fn forwarded_for(address: &str) -> [(&str, &str); 1] {
    [("x-forwarded-for", address)]
}

/// Connects to `url` from each of `addresses` in turn (as `X-Forwarded-For` says): the first
/// two are served, the third is refused with 4029. Returns the two, still open.
async fn two_served_then_a_third_refused(url: &str, addresses: [&str; 3]) -> [Client; 2] {
    let (mut first, _) = connect_with(url, &forwarded_for(addresses[0])).await;
    let (mut second, _) = connect_with(url, &forwarded_for(addresses[1])).await;
    first.assert_alive().await;
    second.assert_alive().await;
    let (mut third, _) = connect_with(url, &forwarded_for(addresses[2])).await;
    assert_eq!(third.closed(T).await.code, 4029);
    [first, second]
}

#[tokio::test]
async fn a_tenant_may_hold_only_so_many_subjects_on_a_gateway() {
    let gw = spawn_gateway_with(|c| c.max_subjects_per_tenant = 2).await;
    let tenant = unique("subjects");
    let stranger_tenant = unique("subjects-b");
    register_devices(&tenant, ["dev-1"]).await;
    register_devices(&stranger_tenant, ["dev-1"]).await;
    let mut c = gw.viewer(&tenant).await;
    c.subscribe(json!({"type": "alerts"})).await;
    c.subscribe(json!({"type": "fleet"})).await;
    let refused = c
        .subscribe(json!({"type": "device", "device_id": "dev-1"}))
        .await;
    assert_eq!(refused["code"], "too_many_subjects", "{refused}");
    assert_eq!(refused["channel"], "device");
    assert_eq!(refused["device_id"], "dev-1");
    // Subjects the tenant already has stay open to its other connections.
    let mut other = gw.viewer(&tenant).await;
    other.assert_subscribes(json!({"type": "alerts"})).await;
    // Another tenant is not affected.
    let mut stranger = gw.viewer(&stranger_tenant).await;
    stranger
        .assert_subscribes(json!({"type": "device", "device_id": "dev-1"}))
        .await;
    // A subject released makes room.
    c.send(json!({"action": "unsubscribe", "type": "fleet"}))
        .await;
    c.until(T, |m| m["type"] == "unsubscribed").await;
    c.assert_subscribes(json!({"type": "device", "device_id": "dev-1"}))
        .await;
}

/// One user (a script holding many connections) cannot spend the tenant's subject budget: it
/// may bring only so many subjects into use, while its colleagues still open new ones and it
/// still joins subjects others brought.
#[tokio::test]
async fn a_user_may_bring_only_so_many_subjects_into_use() {
    let gw = spawn_gateway_with(|c| c.max_subjects_per_user = 2).await;
    let tenant = unique("usersubjects");
    let topic = |name: &str| json!({"type": "events", "topic": name});
    let mut script = connect(&gw.url(&user_token(&tenant, "7"))).await;
    let mut second = connect(&gw.url(&user_token(&tenant, "7"))).await;
    script.assert_subscribes(topic("junk-1")).await;
    second.assert_subscribes(topic("junk-2")).await;
    // Its third new subject is refused, from any of its connections.
    for c in [&mut script, &mut second] {
        let refused = c.subscribe(topic("junk-3")).await;
        assert_eq!(refused["code"], "too_many_subjects", "{refused}");
        assert_eq!(refused["topic"], "junk-3", "{refused}");
    }
    // A colleague opens new subjects, and the script may join one in use.
    let mut colleague = connect(&gw.url(&user_token(&tenant, "8"))).await;
    colleague.assert_subscribes(json!({"type": "alerts"})).await;
    colleague.assert_subscribes(topic("orders")).await;
    script.assert_subscribes(topic("orders")).await;
    // A subject it brought and released, no one else holding it, makes room.
    script
        .send(json!({"action": "unsubscribe", "type": "events", "topic": "junk-1"}))
        .await;
    script.until(T, |m| m["type"] == "unsubscribed").await;
    script.assert_subscribes(topic("junk-3")).await;
}

#[tokio::test]
async fn a_ticket_can_come_as_a_subprotocol_or_as_the_first_message() {
    let gw = spawn_gateway(config()).await;
    let tenant = unique("ticketway");
    let bare = gw.ws_url();
    let offered = format!("pulse.v1, pulse.ticket.{}", viewer_token(&tenant, 60));
    let (mut c, protocol) = connect_with(&bare, &[("sec-websocket-protocol", &offered)]).await;
    assert_eq!(protocol.as_deref(), Some("pulse.v1"));
    c.assert_subscribes(json!({"type": "alerts"})).await;
    // A client offering the ticket alone still connects: a handshake must select one of the
    // protocols offered, so the gateway selects that one.
    let alone = format!("pulse.ticket.{}", viewer_token(&tenant, 60));
    let (mut c, protocol) = connect_with(&bare, &[("sec-websocket-protocol", &alone)]).await;
    assert_eq!(protocol.as_deref(), Some(alone.as_str()));
    c.assert_subscribes(json!({"type": "alerts"})).await;
    // Offered with it, `pulse.v1` is selected, whichever comes first.
    let both = format!("{alone}, pulse.v1");
    let (mut c, protocol) = connect_with(&bare, &[("sec-websocket-protocol", &both)]).await;
    assert_eq!(protocol.as_deref(), Some("pulse.v1"));
    c.assert_subscribes(json!({"type": "alerts"})).await;

    let mut first = connect(&bare).await;
    first
        .send(json!({"action": "auth", "token": viewer_token(&tenant, 60)}))
        .await;
    assert_eq!(first.next(T).await["type"], "authenticated");
    first.assert_subscribes(json!({"type": "alerts"})).await;

    let mut wrong_first = connect(&bare).await;
    wrong_first
        .send(json!({"action": "subscribe", "type": "alerts"}))
        .await;
    assert_eq!(wrong_first.closed(T).await.code, 4001);

    let mut silent = connect(&bare).await;
    assert_eq!(silent.closed(Duration::from_secs(8)).await.code, 4001);
}

#[tokio::test]
async fn a_ticket_is_never_written_to_the_logs() {
    let port = free_port();
    let log = std::env::temp_dir().join(format!("{}.log", unique("pulse-gw-log")));
    let file = std::fs::File::create(&log).unwrap();
    let mut gateway =
        spawn_gateway_process_logging(port, &[("RUST_LOG", "trace")], Some(file)).await;
    let tenant = unique("nolog");
    let in_url = viewer_token(&tenant, 60);
    let in_protocol = viewer_token(&tenant, 61);
    let refused = viewer_token(&tenant, -30); // expired: refused, and still not logged
    let base = format!("ws://127.0.0.1:{port}/api/v2/ws");
    let mut a = connect(&format!("{base}?token={in_url}")).await;
    a.subscribe(json!({"type": "alerts"})).await;
    let offered = format!("pulse.v1, pulse.ticket.{in_protocol}");
    let (mut b, _) = connect_with(&base, &[("sec-websocket-protocol", &offered)]).await;
    b.subscribe(json!({"type": "alerts"})).await;
    let mut c = connect(&format!("{base}?token={refused}")).await;
    assert_eq!(c.closed(T).await.code, 4001);
    // As the first message, and renewed while connected.
    let (in_message, renewal) = (viewer_token(&tenant, 62), viewer_token(&tenant, 63));
    let mut d = connect(&base).await;
    d.send(json!({"action": "auth", "token": in_message})).await;
    assert_eq!(d.next(T).await["type"], "authenticated");
    d.send(json!({"action": "auth", "token": renewal})).await;
    assert_eq!(d.next(T).await["type"], "authenticated");
    drop((a, b, d));
    gateway.start_kill().unwrap();
    gateway.wait().await.unwrap();
    let written = std::fs::read_to_string(&log).unwrap();
    assert!(
        written.len() > 1000,
        "trace logging was on: {} bytes",
        written.len()
    );
    for token in [&in_url, &in_protocol, &refused, &in_message, &renewal] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !written.contains(signature),
            "a ticket's signature was logged"
        );
    }
    let _ = std::fs::remove_file(&log);
}

#[tokio::test]
async fn a_device_the_tenant_does_not_have_is_refused_without_a_nats_subscription() {
    let gw = spawn_gateway(config()).await;
    let tenant = unique("devices");
    let other = unique("devices-b");
    register_devices(&tenant, ["dev-1", "dev-2"]).await;
    register_devices(&other, ["dev-9"]).await;
    let mut c = gw.viewer(&tenant).await;
    let nats_subscriptions = |text: &str| metric(text, "pulse_gateway_nats_subscriptions", &[]);
    let before = nats_subscriptions(&gw.metrics().await);

    // Made-up ids, and another tenant's device, are all unknown here.
    for device in ["dev-3", "dev-9", "DEV-1"] {
        let refused = c
            .subscribe(json!({"type": "device", "device_id": device}))
            .await;
        assert_eq!(refused["type"], "error", "{refused}");
        assert_eq!(refused["code"], "unknown_device", "{refused}");
        assert_eq!(refused["channel"], "device", "{refused}");
        assert_eq!(refused["device_id"], device, "{refused}");
    }
    assert_eq!(nats_subscriptions(&gw.metrics().await), before);
    assert_eq!(
        metric(
            &gw.metrics().await,
            "pulse_gateway_client_errors_total",
            &["code=\"unknown_device\""]
        ),
        3.0
    );
    // The connection stays open and its own devices work.
    c.assert_subscribes(json!({"type": "device", "device_id": "dev-2"}))
        .await;
    assert_eq!(nats_subscriptions(&gw.metrics().await), before + 1.0);

    // A device removed from the registry can no longer be subscribed by a first subscriber.
    register_devices(&tenant, ["dev-2"]).await;
    let refused = c
        .subscribe(json!({"type": "device", "device_id": "dev-1"}))
        .await;
    assert_eq!(refused["code"], "unknown_device", "{refused}");
    // A device added later can.
    register_devices(&tenant, ["dev-2", "dev-3"]).await;
    c.assert_subscribes(json!({"type": "device", "device_id": "dev-3"}))
        .await;
}

#[tokio::test]
async fn without_a_readable_device_registry_a_device_subscribe_is_unavailable_not_allowed() {
    // A NATS server of its own, without the registry's bucket.
    let server = PrivateNats::start().await;
    let gw = spawn_gateway_with(|c| c.nats.url = server.url.clone()).await;
    let mut c = gw.viewer(&unique("noreg")).await;
    let refused = c
        .subscribe(json!({"type": "device", "device_id": "dev-1"}))
        .await;
    assert_eq!(refused["code"], "unavailable", "{refused}");
    assert_eq!(refused["device_id"], "dev-1", "{refused}");
    assert_eq!(
        metric(&gw.metrics().await, "pulse_gateway_nats_subscriptions", &[]),
        0.0
    );
    c.assert_alive().await;
}

#[tokio::test]
async fn sockets_still_waiting_for_their_first_auth_count_against_the_caps() {
    let gw = spawn_gateway_with(|c| c.max_connections_per_address = 2).await;
    let url = gw.ws_url();
    // Two sockets without a token, which have not sent `auth` yet, hold the address's places.
    let mut waiting = [connect(&url).await, connect(&url).await];
    let mut third = connect(&url).await;
    let closed = third.closed(T).await;
    assert_eq!(closed.code, 4029, "{closed:?}");
    assert!(closed.reason.contains("address"), "{closed:?}");
    // A place passes to its connection when it authenticates: the address still has none.
    let tenant = unique("preauth");
    let [first, second] = &mut waiting;
    first
        .send(json!({"action": "auth", "token": viewer_token(&tenant, 60)}))
        .await;
    first.until(T, |m| m["type"] == "authenticated").await;
    first.assert_alive().await;
    assert_eq!(gw.viewer(&tenant).await.closed(T).await.code, 4029);
    // One that leaves frees its place (by the time the gateway answers its close).
    second.ws.close(None).await.unwrap();
    second.closed_or_dropped(T).await;
    gw.viewer(&tenant).await.assert_alive().await;

    // The instance's cap counts them too: answered with 503 before the upgrade.
    let full = spawn_gateway_with(|c| c.max_connections = 2).await;
    let url = full.ws_url();
    let _waiting = [connect(&url).await, connect(&url).await];
    assert_upgrade_refused_for_now(&url).await;
}

//! Every way a connection can be refused, and token renewal.

use std::time::{Duration, Instant};

use pulse_test_support::proxy::{Link, Proxy};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn every_bad_token_gets_its_close_code() {
    let gw = spawn_gateway(config()).await;
    let t = unique("auth");
    let exp = now() + 300;
    let wrong_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"tenant_id": t, "role": "customer_admin", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(b"some-other-secret-some-other-secret"),
    )
    .unwrap();
    // {"alg":"none","typ":"JWT"} . {"tenant_id":"x","role":"customer_admin","exp":9999999999} .
    let alg_none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJ0ZW5hbnRfaWQiOiJ4Iiwicm9sZSI6ImN1c3RvbWVyX2FkbWluIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
    // A header whose `alg` the parse error quotes: 200 two-byte characters, so a close reason
    // cut at a fixed byte would cut one in half.
    let quoted = {
        use base64::Engine as _;
        let header = format!(r#"{{"alg":"{}","typ":"JWT"}}"#, "é".repeat(200));
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header);
        format!("{header}.e30.c2ln")
    };
    let cases = [
        ("missing", gw.ws_url(), 4001),
        ("a header the error quotes", gw.url(&quoted), 4001),
        ("empty", gw.url(""), 4001),
        ("malformed", gw.url("not-a-jwt"), 4001),
        ("wrong key", gw.url(&wrong_key), 4001),
        ("alg none", gw.url(alg_none), 4001),
        (
            "expired",
            gw.url(&sign(
                json!({"tenant_id": t, "role": "customer_admin", "exp": now() - 10}),
            )),
            4001,
        ),
        (
            "not yet valid",
            gw.url(&sign(
                json!({"tenant_id": t, "role": "customer_admin", "exp": exp, "nbf": now() + 600}),
            )),
            4001,
        ),
        (
            "a web session token",
            gw.url(&sign(
                json!({"tenant_id": t, "role": "customer_admin", "exp": exp, "kind": "session"}),
            )),
            4001,
        ),
        (
            "a token of another purpose",
            gw.url(&sign(
                json!({"tenant_id": t, "role": "customer_admin", "exp": exp, "kind": "refresh"}),
            )),
            4001,
        ),
        (
            "no exp",
            gw.url(&sign(json!({"tenant_id": t, "role": "customer_admin"}))),
            4001,
        ),
        (
            "no tenant",
            gw.url(&sign(json!({"role": "customer_admin", "exp": exp}))),
            4003,
        ),
        (
            "no role",
            gw.url(&sign(json!({"tenant_id": t, "exp": exp}))),
            4003,
        ),
        (
            "other role",
            gw.url(&sign(
                json!({"tenant_id": t, "role": "internal_admin", "exp": exp}),
            )),
            4003,
        ),
        (
            "wildcard tenant",
            gw.url(&sign(
                json!({"tenant_id": "*", "role": "customer_admin", "exp": exp}),
            )),
            4003,
        ),
    ];
    for (what, url, code) in cases {
        let mut c = connect(&url).await;
        // Without a token the first message must bring one, within 5 s.
        let closed = c.closed(Duration::from_secs(8)).await;
        assert_eq!(closed.code, code, "{what}: {closed:?}");
        assert!(!closed.reason.is_empty(), "{what}: a reason is given");
        assert!(closed.reason.len() <= 123, "{what}: {closed:?}");
    }
    let m = gw.metrics().await;
    assert!(metric(&m, "pulse_gateway_auth_failures_total", &["expired"]) >= 1.0);
    assert!(metric(&m, "pulse_gateway_auth_failures_total", &["forbidden"]) >= 4.0);
}

#[tokio::test]
async fn a_websocket_ticket_a_token_without_a_kind_and_one_that_never_expires_all_connect() {
    let gw = spawn_gateway(config()).await;
    let t = unique("kind");
    let exp = now() + 300;
    let ticket = sign(json!({"tenant_id": t, "role": "customer_viewer", "exp": exp, "kind": "ws"}));
    let external = sign(json!({"tenant_id": t, "role": "customer_viewer", "exp": exp}));
    // An issuer's token that never expires, in effect: the largest `exp` there is.
    let endless = sign(json!({"tenant_id": t, "role": "customer_viewer", "exp": u64::MAX}));
    for token in [ticket, external, endless] {
        let mut c = connect(&gw.url(&token)).await;
        c.assert_subscribes(json!({"type": "alerts"})).await;
    }
}

#[tokio::test]
async fn a_bearer_header_works_for_non_browser_clients() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let gw = spawn_gateway(config()).await;
    let mut request = gw.ws_url().into_client_request().unwrap();
    let token = viewer_token(&unique("bearer"), 60);
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut c = Client { ws };
    c.assert_alive().await;
}

#[tokio::test]
async fn an_expiring_token_closes_the_connection_unless_renewed() {
    let gw = spawn_gateway(config()).await;
    let tenant = unique("expiry");
    let mut lapsing = connect(&gw.url(&viewer_token(&tenant, 2))).await;
    let mut renewing = connect(&gw.url(&viewer_token(&tenant, 2))).await;
    renewing
        .send(json!({"action": "auth", "token": viewer_token(&tenant, 120)}))
        .await;
    let reply = renewing.next(Duration::from_secs(5)).await;
    assert_eq!(reply["type"], "authenticated");
    assert!(reply["exp"].as_u64().unwrap() >= now() + 100);
    // A token of another tenant, or a bad one, is refused and changes nothing.
    renewing
        .send(json!({"action": "auth", "token": viewer_token(&unique("other"), 600)}))
        .await;
    let refused = renewing.next(Duration::from_secs(5)).await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("invalid_token"))
    );
    renewing
        .send(json!({"action": "auth", "token": "garbage"}))
        .await;
    assert_eq!(
        renewing.next(Duration::from_secs(5)).await["code"],
        "invalid_token"
    );

    let closed = lapsing.closed(Duration::from_secs(6)).await;
    assert_eq!(closed.code, 4001);
    assert_eq!(closed.reason, "token expired");
    // Well past the first expiry, the renewed connection is still usable.
    renewing.assert_alive().await;
}

/// The leeway for clock skew is for `nbf`: a token an issuer running ahead minted a moment
/// "early" connects and stays. One past its `exp` is refused as expired, leeway or not (let in,
/// it would be closed at once), and counted as the auth failure it is.
#[tokio::test]
async fn the_leeway_lets_a_token_in_before_its_nbf_but_not_after_its_exp() {
    let gw = spawn_gateway_with(|c| c.jwt_leeway_seconds = 5).await;
    let t = unique("leeway");
    let early = sign(
        json!({"tenant_id": t, "role": "customer_viewer", "exp": now() + 60, "nbf": now() + 3}),
    );
    let mut c = connect(&gw.url(&early)).await;
    c.assert_alive().await;

    let lapsed = sign(json!({"tenant_id": t, "role": "customer_viewer", "exp": now() - 2}));
    let closed = connect(&gw.url(&lapsed))
        .await
        .closed(Duration::from_secs(5))
        .await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (4001, "token expired")
    );
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, "pulse_gateway_auth_failures_total", &["expired"]),
        1.0
    );
    c.assert_alive().await;
}

/// A renewal past `exp` is refused too (let in, it would end the connection at once), and the
/// token in force stays.
#[tokio::test]
async fn an_auth_token_expired_within_the_leeway_is_refused_and_the_current_one_stays() {
    let gw = spawn_gateway_with(|c| c.jwt_leeway_seconds = 5).await;
    let tenant = unique("leeway");
    let mut c = connect(&gw.url(&viewer_token(&tenant, 60))).await;
    c.send(json!({"action": "auth", "token": viewer_token(&tenant, -2)}))
        .await;
    let refused = c.next(Duration::from_secs(5)).await;
    assert_eq!(
        (refused["code"].as_str(), refused["message"].as_str()),
        (Some("invalid_token"), Some("token expired")),
        "{refused}"
    );
    // Not closed with 4001 moments later either.
    assert!(c.try_next(Duration::from_millis(500)).await.is_none());
    c.assert_alive().await;
}

/// A logout everywhere, counted (Pulse's tickets carry the count their session was read
/// with): a ticket read before it is closed with 4001, even one stamped a moment after it by a
/// clock running ahead; one of a login after it stays, or connects at once, where `iat` alone
/// would keep it out for seconds. A token that is no Pulse ticket, or says no count, is judged
/// by its `iat`, as before; one counting fewer but issued long after (a database restored
/// since) is let in.
#[tokio::test]
async fn a_counted_logout_everywhere_refuses_exactly_the_tickets_read_before_it() {
    let gw = spawn_gateway(config()).await;
    let nats = nats().await;
    let tenant = unique("signouts");
    let token = |kind: &str, signouts: Option<u64>, iat: u64| {
        let mut claims = json!({"sub": "7", "tenant_id": tenant, "role": "customer_admin", "iat": iat, "exp": now() + 90});
        if !kind.is_empty() {
            claims["kind"] = json!(kind);
        }
        if let Some(n) = signouts {
            claims["signouts"] = json!(n);
        }
        sign(claims)
    };
    let url = |kind: &str, signouts: Option<u64>, iat: u64| gw.url(&token(kind, signouts, iat));
    let mut before = connect(&url("ws", Some(4), now())).await;
    let mut new_login = connect(&url("ws", Some(5), now())).await;
    // Opened before, renewed with a ticket of the new login: judged by the one it holds now.
    let mut renewed = connect(&url("ws", Some(4), now())).await;
    for c in [&mut before, &mut new_login, &mut renewed] {
        c.subscribe(json!({"type": "alerts"})).await;
    }
    renewed
        .send(json!({"action": "auth", "token": token("ws", Some(5), now())}))
        .await;
    assert_eq!(
        renewed.next(Duration::from_secs(5)).await["type"],
        "authenticated"
    );
    let ended = json!({"type": "user_changed", "tenant_id": tenant, "user_id": "7", "change": "signed_out", "signouts": 5});
    tell_gateways(&nats, &tenant, ended).await;
    assert_eq!(before.closed(Duration::from_secs(5)).await.code, 4001);
    new_login.assert_alive().await;
    renewed.assert_alive().await;

    for (what, url) in [
        ("read before, stamped ahead", url("ws", Some(4), now() + 3)),
        ("no count", url("ws", None, now())),
        ("not a ticket", url("", Some(5), now())),
    ] {
        let closed = connect(&url).await.closed(Duration::from_secs(5)).await;
        assert_eq!(closed.code, 4001, "{what}");
    }
    for url in [url("ws", Some(5), now()), url("ws", Some(1), now() + 60)] {
        let mut c = connect(&url).await;
        c.subscribe(json!({"type": "alerts"})).await;
        c.assert_alive().await;
    }
}

/// Publishes `change` of a user of `tenant` as the poller does.
async fn tell_gateways(nats: &async_nats::Client, tenant: &str, change: serde_json::Value) {
    let subject = format!("pulse.v1.{tenant}.users");
    nats.publish(subject, change.to_string().into())
        .await
        .unwrap();
    nats.flush().await.unwrap();
}

/// A logout ends one session: the connections of its tickets (claim `sid`) close with 4001 and
/// its tickets are refused, as connection and as renewal; the user's other sessions stay.
#[tokio::test]
async fn a_logout_ends_the_connections_of_that_sessions_tickets_only() {
    let gw = spawn_gateway(config()).await;
    let nats = nats().await;
    let tenant = unique("sessionend");
    let token = |kind: &str, sid: &str| {
        let mut claims = json!({"sub": "7", "tenant_id": tenant, "role": "customer_admin",
                                "iat": now(), "exp": now() + 90, "sid": sid});
        if !kind.is_empty() {
            claims["kind"] = json!(kind);
        }
        sign(claims)
    };
    let (ended, kept) = ("00000000000000ab", "00000000000000cd");
    let mut of_ended = connect(&gw.url(&token("ws", ended))).await;
    let mut of_kept = connect(&gw.url(&token("ws", kept))).await;
    for c in [&mut of_ended, &mut of_kept] {
        c.subscribe(json!({"type": "alerts"})).await;
    }
    let end = json!({"type": "user_changed", "tenant_id": tenant, "user_id": "7",
                     "change": "session_ended", "session": ended});
    tell_gateways(&nats, &tenant, end).await;
    assert_eq!(of_ended.closed(Duration::from_secs(5)).await.code, 4001);
    of_kept.assert_alive().await;

    let closed = connect(&gw.url(&token("ws", ended)))
        .await
        .closed(Duration::from_secs(5))
        .await;
    assert_eq!(closed.code, 4001);
    // Refused as a renewal, and the connection goes on with its own ticket.
    renewal_refused(&mut of_kept, &token("ws", ended)).await;
    // Only Pulse's tickets (kind `ws`) name a session: a token of no kind, another issuer's,
    // is not judged by a claim of that name.
    let mut other_kind = connect(&gw.url(&token("", ended))).await;
    other_kind.subscribe(json!({"type": "alerts"})).await;
    other_kind.assert_alive().await;
}

#[tokio::test]
async fn a_foreign_origin_is_refused_before_the_upgrade() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let gw =
        spawn_gateway_with(|c| c.allowed_origins = vec!["https://dash.example.test".into()]).await;
    let token = viewer_token(&unique("origin"), 60);
    let mut bad = gw.url(&token).into_client_request().unwrap();
    bad.headers_mut()
        .insert("Origin", "https://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(bad).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    let mut good = gw.url(&token).into_client_request().unwrap();
    good.headers_mut()
        .insert("Origin", "https://dash.example.test".parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(good).await.unwrap();
    Client { ws }.assert_alive().await;
}

#[tokio::test]
async fn a_deleted_or_demoted_user_is_disconnected_within_moments_and_old_tickets_stay_out() {
    let gw = spawn_gateway(config()).await;
    let nats = nats().await;
    let tenant = unique("revoke");
    let token = |sub: &str| {
        sign(
            json!({"sub": sub, "tenant_id": tenant, "role": "customer_admin", "exp": now() + 300, "kind": "ws"}),
        )
    };
    let mut deleted = connect(&gw.url(&token("41"))).await;
    let mut demoted = connect(&gw.url(&token("42"))).await;
    let mut bystander = connect(&gw.url(&token("43"))).await;
    // An issuer that numbers its users: `44` is user "44".
    let numbered_token = sign(
        json!({"sub": 44, "tenant_id": tenant, "role": "customer_admin", "exp": now() + 300, "kind": "ws"}),
    );
    let mut numbered = connect(&gw.url(&numbered_token)).await;
    for c in [&mut deleted, &mut demoted, &mut bystander, &mut numbered] {
        c.subscribe(json!({"type": "alerts"})).await;
    }
    let change = |user: &str, change: &str| {
        json!({"type": "user_changed", "tenant_id": tenant, "user_id": user, "change": change})
            .to_string()
    };
    // A change sent on another tenant's subject is not believed: 43 stays connected.
    let other = unique("revoke-other");
    for (on, user, what) in [
        (&other, "43", "deleted"),
        (&tenant, "41", "deleted"),
        (&tenant, "42", "role"),
        (&tenant, "44", "deleted"),
    ] {
        nats.publish(format!("pulse.v1.{on}.users"), change(user, what).into())
            .await
            .unwrap();
    }
    nats.flush().await.unwrap();
    let started = std::time::Instant::now();
    assert_eq!(deleted.closed(Duration::from_secs(5)).await.code, 4003);
    assert_eq!(numbered.closed(Duration::from_secs(5)).await.code, 4003);
    assert_eq!(demoted.closed(Duration::from_secs(5)).await.code, 4001);
    assert_took_less_than(
        Duration::from_secs(2),
        started,
        "user_changed published -> the three connections closed",
    );
    bystander.assert_alive().await;
    // Nor may another user's connection renew as the deleted user: refused before it is
    // told `authenticated`, and it stays its own user's.
    renewal_refused(&mut bystander, &token("41")).await;
    // A ticket the deleted user got just before the deletion, still unexpired, connects no
    // more; nor does one the demoted user got before the change (it carries the old role: 4001,
    // for a fresh one), while the demoted user's next ticket does.
    let mut late = connect(&gw.url(&token("41"))).await;
    assert_eq!(late.closed(Duration::from_secs(5)).await.code, 4003);
    let stale = sign(
        json!({"sub": "42", "tenant_id": tenant, "role": "customer_admin", "iat": now() - 10, "exp": now() + 300, "kind": "ws"}),
    );
    let mut stale = connect(&gw.url(&stale)).await;
    assert_eq!(stale.closed(Duration::from_secs(5)).await.code, 4001);
    let fresh = sign(
        json!({"sub": "42", "tenant_id": tenant, "role": "customer_viewer", "iat": now() + 1, "exp": now() + 300, "kind": "ws"}),
    );
    connect(&gw.url(&fresh)).await.assert_alive().await;
    // So is one issued a moment after the deletion by a clock running ahead of the gateway's:
    // no issuer mints a ticket for a deleted user.
    let ahead = sign(
        json!({"sub": "41", "tenant_id": tenant, "role": "customer_admin", "iat": now() + 2, "exp": now() + 300, "kind": "ws"}),
    );
    let mut ahead = connect(&gw.url(&ahead)).await;
    assert_eq!(ahead.closed(Duration::from_secs(5)).await.code, 4003);
    // One issued well after the deletion (`iat`: the id names a user created again) connects.
    let again = sign(
        json!({"sub": "41", "tenant_id": tenant, "role": "customer_admin", "iat": now() + 10, "exp": now() + 300, "kind": "ws"}),
    );
    let mut recreated = connect(&gw.url(&again)).await;
    recreated.assert_alive().await;
    // A renewal with the old ticket, of the same user id but from before the deletion, speaks
    // for no one: refused, and the connection's current token stays in force.
    renewal_refused(&mut recreated, &token("41")).await;
}

/// Renewing with `token` is refused with `invalid_token`, and `c` stays open.
async fn renewal_refused(c: &mut Client, token: &str) {
    c.send(json!({"action": "auth", "token": token})).await;
    let refused = c.next(Duration::from_secs(5)).await;
    assert_eq!(refused["code"], "invalid_token", "{refused}");
    c.assert_alive().await;
}

/// A client on a slow link whose alerts change faster than the link carries them: the gateway
/// has a newer snapshot to write after every write (conflated, so never 4008), and must still
/// read what the client sends. Its `ping` and its renewal are answered in time, and the
/// connection outlives the first token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_of_busy_snapshots_still_has_its_renewal_and_pings_answered() {
    let tenant = unique("slowrenew");
    let nats = nats().await;
    let (addr, _stop) = gateway_with_small_send_buffers().await;
    let proxy = Proxy::to(addr.to_string()).await;
    let first_token = Duration::from_secs(6);
    let url = format!(
        "ws://127.0.0.1:{}/api/v2/ws?token={}",
        proxy.port,
        viewer_token(&tenant, first_token.as_secs() as i64)
    );
    let mut c = connect(&url).await;
    let connected = Instant::now();
    c.assert_subscribes(json!({"type": "alerts"})).await;
    proxy.set(Link::Slow(Duration::from_millis(5)));

    // Alerts of some 100 KiB every 10 ms: several times what the link carries.
    let subject = format!("pulse.v1.{tenant}.alerts");
    let pad = "x".repeat(100 * 1024);
    let publisher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        for seq in 1.. {
            tick.tick().await;
            let body = json!({"type": "alerts", "alerts": [], "pad": pad});
            let (headers, payload) = sequenced(seq, body);
            let sent = nats.publish_with_headers(subject.clone(), headers, payload);
            if sent.await.is_err() || nats.flush().await.is_err() {
                return;
            }
        }
    });
    // The client reads all the link brings until 2 s in: the scenario's timing.
    let mut snapshots = 0;
    let two_seconds_in = connected + Duration::from_secs(2);
    read_replies(&mut c, two_seconds_in, &mut snapshots, |_| false).await;
    assert!(snapshots > 0, "no snapshot reached the client");

    c.send(json!({"action": "ping"})).await;
    c.send(json!({"action": "auth", "token": viewer_token(&tenant, 120)}))
        .await;
    let (mut pong, mut authenticated) = (false, false);
    let answered = read_replies(
        &mut c,
        Instant::now() + Duration::from_secs(2),
        &mut snapshots,
        |m| {
            pong |= m["type"] == "pong";
            authenticated |= m["type"] == "authenticated";
            pong && authenticated
        },
    )
    .await;
    assert!(
        answered,
        "within 2 s: pong {pong}, authenticated {authenticated}"
    );

    // Past the first token's expiry the connection stays open.
    let past_expiry = connected + first_token + Duration::from_secs(2);
    read_replies(&mut c, past_expiry, &mut snapshots, |_| false).await;
    publisher.abort();
    c.assert_alive().await;
}

/// Reads `c` until `deadline`, or until `done` says so of a reply (true then); the large
/// snapshots are counted in `snapshots`, not parsed, so that the reader keeps up with the
/// link. Panics if the connection ends.
async fn read_replies(
    c: &mut Client,
    deadline: Instant,
    snapshots: &mut usize,
    mut done: impl FnMut(&serde_json::Value) -> bool,
) -> bool {
    use futures::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = match tokio::time::timeout(left, c.ws.next()).await {
            Err(_) => return false,
            Ok(message) => message,
        };
        match message {
            Some(Ok(Message::Text(text))) if text.len() > 4096 => *snapshots += 1,
            Some(Ok(Message::Text(text))) => {
                let reply: serde_json::Value = serde_json::from_str(&text).unwrap();
                if done(&reply) {
                    return true;
                }
            }
            Some(Ok(Message::Close(frame))) => panic!("closed: {frame:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("websocket error: {e}"),
            None => panic!("the connection ended"),
        }
    }
}

/// A gateway with [`config`] whose connections have send buffers of 64 KiB, set on its
/// listening socket (each accepted connection inherits it, and the kernel no longer grows it):
/// a slow link then holds the gateway's writes back, rather than megabytes queued in the
/// kernel ahead of every reply. Its address, and the token that stops it when dropped.
async fn gateway_with_small_send_buffers() -> (std::net::SocketAddr, tokio_util::sync::DropGuard) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(64 * 1024).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(128).unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(pulse_gateway::run(
        config(),
        listener,
        stop.clone().cancelled_owned(),
    ));
    pulse_test_support::gateway::wait_ready(addr).await;
    (addr, stop.drop_guard())
}

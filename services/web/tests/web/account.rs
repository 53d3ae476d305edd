//! Login, logout, sessions and WebSocket tickets.

use std::time::Duration;

use pulse_test_support::eventually;
use serde_json::{Value, json};

use crate::helpers::*;

/// `r` answers a logout that ended a session: 204, the cookie cleared.
fn assert_logged_out(r: &reqwest::Response) {
    assert_eq!(r.status(), 204);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_logout_clears_it() {
    let env = spawn().await;
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let r = env
        .post_login(&client, &format!("ADMIN@{}.example", env.tenant), PASSWORD)
        .await;
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("pulse_session="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["tenant_id"], env.tenant.as_str());
    assert_eq!(me["role"], "customer_admin");
    let me: Value = get_json(&client, env.at("/api/v2/me")).await;
    assert_eq!(me["email"], format!("admin@{}.example", env.tenant));

    let r = client.post(env.at("/api/v2/logout")).send().await.unwrap();
    assert_logged_out(&r);
    let r = client.get(env.at("/api/v2/me")).send().await.unwrap();
    assert_eq!(error_code(r, 401).await, "unauthorized");

    // A logout from a form on another site (which the browser sends no SameSite=Strict cookie
    // with) is refused, and clears nothing: its answer cannot sign anyone out.
    let r = reqwest::Client::new()
        .post(env.at("/api/v2/logout"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none(), "{:?}", r.headers());
    env.finish().await;
}

/// Behind HTTPS (`PULSE_COOKIE_SECURE`) the session cookie is a `__Host-` one, and only it is
/// read: a plain `pulse_session` cookie, which any host of the domain can set for all of them,
/// opens no session, even one holding a valid token.
#[tokio::test]
async fn over_https_the_session_cookie_is_one_no_other_host_can_set() {
    let env = spawn_with(|c| c.cookie_secure = true).await;
    let secure = session_cookie(&env, "viewer").await;
    let token = secure
        .strip_prefix("__Host-pulse_session=")
        .unwrap_or_else(|| panic!("{secure}"));
    assert_eq!(get_with(&env, &secure, "/api/v2/me").await.status(), 200);
    let planted = format!("pulse_session={token}");
    assert_session_ended(&env, &planted).await;
    env.finish().await;
}

/// Logs in without a cookie jar and returns the raw session cookie (`pulse_session=<token>`,
/// or `__Host-pulse_session=<token>` over HTTPS).
async fn session_cookie(env: &Env, who: &str) -> String {
    let email = format!("{who}@{}.example", env.tenant);
    let r = env
        .post_login(&reqwest::Client::new(), &email, PASSWORD)
        .await;
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// The session `cookie` names is over: `/api/v2/me` answers 401.
async fn assert_session_ended(env: &Env, cookie: &str) {
    let r = get_with(env, cookie, "/api/v2/me").await;
    assert_eq!(error_code(r, 401).await, "unauthorized");
}

async fn get_with(env: &Env, cookie: &str, path: &str) -> reqwest::Response {
    send_with(env, reqwest::Method::GET, cookie, path).await
}

/// A `method` request of `path` as the session `cookie`.
async fn send_with(
    env: &Env,
    method: reqwest::Method,
    cookie: &str,
    path: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .request(method, env.at(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_logged_out_session_cookie_replayed_gets_401() {
    let env = spawn().await;
    let cookie = session_cookie(&env, "admin").await;
    let other = session_cookie(&env, "admin").await;
    assert_eq!(get_with(&env, &cookie, "/api/v2/me").await.status(), 200);
    let r = reqwest::Client::new()
        .post(env.at("/api/v2/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // The cookie a browser would have dropped, sent again by hand: the session is gone.
    for path in ["/api/v2/me", "/api/v2/ws-ticket", "/api/v2/alerts"] {
        let r = get_with(&env, &cookie, path).await;
        assert_eq!(error_code(r, 401).await, "unauthorized", "{path}");
    }
    // Another session of the same user is not affected.
    assert_eq!(get_with(&env, &other, "/api/v2/me").await.status(), 200);
    env.finish().await;
}

/// "Log out everywhere": every session of the user ends, the one that asked included, and no
/// one else's; a value of `everywhere` that is not a boolean is refused and ends nothing.
#[tokio::test]
async fn logging_out_everywhere_ends_every_session_of_the_user_and_only_them() {
    let env = spawn().await;
    let [here, elsewhere, ended, colleague] = [
        session_cookie(&env, "admin").await,
        session_cookie(&env, "admin").await,
        session_cookie(&env, "admin").await,
        session_cookie(&env, "viewer").await,
    ];
    for bad in ["?everywhere=yes", "?everwhere=true"] {
        let refused = logout(&env, bad, &here).await;
        assert_eq!(error_code(refused, 400).await, "bad_request", "{bad}");
    }
    // From a session that ended, nothing can be ended: 401, the others untouched.
    assert_eq!(logout(&env, "", &ended).await.status(), 204);
    let refused = logout(&env, "?everywhere=true", &ended).await;
    assert_eq!(error_code(refused, 401).await, "unauthorized");
    // Nor without a cookie, which is how a session looks once the browser dropped it.
    let cookieless = reqwest::Client::new()
        .post(env.at("/api/v2/logout?everywhere=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(cookieless, 401).await, "unauthorized");
    for cookie in [&here, &elsewhere] {
        assert_eq!(get_with(&env, cookie, "/api/v2/me").await.status(), 200);
    }

    assert_logged_out(&logout(&env, "?everywhere=true", &here).await);
    for cookie in [&here, &elsewhere] {
        let r = get_with(&env, cookie, "/api/v2/ws-ticket").await;
        assert_eq!(error_code(r, 401).await, "unauthorized");
    }
    assert_eq!(get_with(&env, &colleague, "/api/v2/me").await.status(), 200);
    // What the gateways are told (through the poller), only of this user: the session the
    // plain logout ended, then the end of every session once, with the count of them (which
    // covers the two sessions it ended); nothing of the refused attempts.
    let admin: i64 = sqlx::query_scalar("SELECT user_id FROM users WHERE email = $1")
        .bind(format!("admin@{}.example", env.tenant))
        .fetch_one(&env.pool)
        .await
        .unwrap();
    let told: Option<String> = sqlx::query_scalar(
        "SELECT string_agg(concat_ws(':', user_id, change, signouts), ' ' ORDER BY id) \
           FROM user_changes WHERE tenant_id = $1",
    )
    .bind(&env.tenant)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    let expected = format!("{admin}:session_ended {admin}:signed_out:1");
    assert_eq!(told.as_deref(), Some(expected.as_str()));
    env.finish().await;
}

/// A new password (how a stolen one is answered) ends every session of the user, also one
/// taken with the old password; other users keep theirs, and the new password logs in.
#[tokio::test]
async fn a_password_change_ends_the_users_sessions() {
    let env = spawn().await;
    let stolen = session_cookie(&env, "admin").await;
    let bystander = session_cookie(&env, "viewer").await;
    let email = format!("admin@{}.example", env.tenant);
    // Set as an outside tool would; the new hash is the viewer's, of the same password with
    // another salt, so the test can log in with it.
    env.execute(
        "UPDATE users SET password_hash = (SELECT password_hash FROM users u \
          WHERE u.email = 'viewer@' || split_part($1, '@', 2)) WHERE email = $1",
        &[&email],
    )
    .await;
    assert_session_ended(&env, &stolen).await;
    assert_eq!(get_with(&env, &bystander, "/api/v2/me").await.status(), 200);
    assert_eq!(
        get_with(&env, &session_cookie(&env, "admin").await, "/api/v2/me")
            .await
            .status(),
        200
    );
    // Writing the same hash again changes nothing and ends nothing.
    let kept = session_cookie(&env, "admin").await;
    env.execute(
        "UPDATE users SET password_hash = password_hash WHERE email = $1",
        &[&email],
    )
    .await;
    assert_eq!(get_with(&env, &kept, "/api/v2/me").await.status(), 200);
    env.finish().await;
}

/// A change of `email`'s password, set the way `set` says and left open, and a login with
/// the old password started meanwhile: the open change, the login's status once it answers,
/// and its client (with whatever cookie it got).
async fn login_racing_a_password_change(
    env: &Env,
    email: &str,
    set: &str,
) -> (
    sqlx::Transaction<'static, sqlx::Postgres>,
    tokio::task::JoinHandle<u16>,
    reqwest::Client,
) {
    let mut change = env.pool.begin().await.unwrap();
    // A new hash, of a password the login does not know.
    sqlx::query(&format!(
        "UPDATE users SET {set} password_hash = 'replaced-' || md5(random()::text) \
          WHERE email = $1"
    ))
    .bind(email)
    .execute(&mut *change)
    .await
    .unwrap();
    let racer = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let login = tokio::spawn({
        let (racer, url) = (racer.clone(), env.at("/api/v2/login"));
        let body = json!({"email": email, "password": PASSWORD});
        async move { post_json(&racer, url, &body).await.status().as_u16() }
    });
    // The login has read the old hash: it has answered, or it waits for the change.
    eventually(
        "the login answered or waiting",
        Duration::from_secs(10),
        || async { login.is_finished() || env.lock_waited_for().await },
    )
    .await;
    (change, login, racer)
}

/// A login checks the password against the hash it read, and argon2 takes its time: a new
/// password set meanwhile (in a transaction of any length, with the user's other columns or
/// alone) must not leave that login a session that outlives it. The login waits for the
/// change, then is refused.
#[tokio::test]
async fn a_login_racing_a_password_change_gets_no_session_that_outlives_it() {
    let env = spawn().await;
    // The password alone, then with a key column (`email` is unique): the row is held
    // otherwise, and the login must not wait for the change while the change waits for it.
    for (who, set) in [("admin", ""), ("viewer", "email = email,")] {
        let email = format!("{who}@{}.example", env.tenant);
        let (change, login, racer) = login_racing_a_password_change(&env, &email, set).await;
        change.commit().await.unwrap();
        assert_eq!(login.await.unwrap(), 401, "SET {set} password_hash");
        let me = get(&racer, env.at("/api/v2/me")).await.status();
        assert_eq!(me, 401, "no session outlived the change");
    }
    env.finish().await;
}

/// A change of a user's password left open (a forgotten `psql` transaction) holds that user's
/// logins a few seconds, then they are told to come back: they do not hold the service's
/// database connections for as long as it stays open.
#[tokio::test]
async fn a_password_change_left_open_turns_its_users_logins_away_after_a_while() {
    let env = spawn().await;
    let email = format!("admin@{}.example", env.tenant);
    let (change, login, _) = login_racing_a_password_change(&env, &email, "").await;
    let status = tokio::time::timeout(Duration::from_secs(15), login)
        .await
        .expect("answered while the change is still open")
        .unwrap();
    assert_eq!(status, 503);
    change.rollback().await.unwrap();
    env.login("admin", &env.tenant).await;
    env.finish().await;
}

#[tokio::test]
async fn a_role_change_or_a_deleted_user_takes_effect_on_the_next_request() {
    let env = spawn().await;
    let cookie = session_cookie(&env, "admin").await;
    let email = format!("admin@{}.example", env.tenant);
    env.execute(
        "UPDATE users SET role = 'customer_viewer' WHERE email = $1",
        &[&email],
    )
    .await;
    let me: Value = get_with(&env, &cookie, "/api/v2/me")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "customer_viewer");
    let r = reqwest::Client::new()
        .post(env.at("/api/v2/events"))
        .header("cookie", &cookie)
        .json(&json!({"topic": "tickets", "event": "ticket:update"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r, 403).await,
        "forbidden",
        "a demoted admin may not publish"
    );
    let claims = ticket_claims(&env, &cookie).await;
    assert_eq!(
        claims["role"], "customer_viewer",
        "tickets carry the new role"
    );

    env.execute("DELETE FROM users WHERE email = $1", &[&email])
        .await;
    assert_session_ended(&env, &cookie).await;
    env.finish().await;
}

#[tokio::test]
async fn bad_logins_are_refused_and_rate_limited() {
    let env = spawn().await;
    let client = reqwest::Client::new();
    let email = format!("viewer@{}.example", env.tenant);
    let r = post_json(&client, env.at("/api/v2/login"), &json!({"email": email})).await;
    assert_eq!(error_code(r, 400).await, "bad_request");
    let r = post_raw_json(&client, env.at("/api/v2/login"), "not json").await;
    assert_eq!(error_code(r, 400).await, "bad_request");
    // A body over the API's body limit is told so, as on every JSON endpoint.
    let r = env
        .post_login(&client, &email, &"x".repeat(200 * 1024))
        .await;
    assert_eq!(error_code(r, 413).await, "payload_too_large");
    // Too long to be anyone's: said so, not "required".
    let r = env.post_login(&client, &email, &"x".repeat(2_000)).await;
    assert_eq!(r.status(), 400);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("at most 1024")),
        "{answer}"
    );
    let r = env.post_login(&client, "nobody@nowhere.example", "x").await;
    assert_eq!(error_code(r, 401).await, "unauthorized");
    for _ in 0..5 {
        let r = env.post_login(&client, &email, "wrong").await;
        assert_eq!(r.status(), 401);
    }
    // Even the right password now waits out the window.
    let r = env.post_login(&client, &email, PASSWORD).await;
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(error_code(r, 429).await, "rate_limited");
    env.finish().await;
}

#[tokio::test]
async fn a_ws_ticket_is_short_lived_for_the_same_tenant_and_a_gateway_accepts_it() {
    let env = spawn().await;
    let r = reqwest::get(env.at("/api/v2/ws-ticket")).await.unwrap();
    assert_eq!(error_code(r, 401).await, "unauthorized");
    let client = env.login("viewer", &env.tenant).await;
    let r = get(&client, env.at("/api/v2/ws-ticket")).await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let ticket: Value = r.json().await.unwrap();
    let now = pulse_test_support::jwt::now();
    let exp = ticket["expires_at"].as_u64().unwrap();
    assert!(exp > now && exp <= now + 60, "ticket lives {}s", exp - now);
    assert_eq!(ticket["expires_in"], json!(60));
    assert_eq!(ticket["gateways"], json!(["ws://127.0.0.1:1/api/v2/ws"]));
    let token = ticket["token"].as_str().unwrap();
    // Same tenant and role, verified with the gateways' secret.
    let payload = token.split('.').nth(1).unwrap();
    let claims = decode_b64url(payload);
    let claims: Value = serde_json::from_slice(&claims).unwrap();
    assert_eq!(claims["tenant_id"], env.tenant.as_str());
    assert_eq!(claims["role"], "customer_viewer");
    assert_eq!(claims["kind"], "ws");
    // A gateway sharing the secret accepts it.
    let gateway =
        pulse_test_support::gateway::spawn(pulse_test_support::gateway::config(&[])).await;
    let mut ws = pulse_test_support::ws::connect(&gateway.url(token)).await;
    let reply = ws.subscribe(json!({"type": "alerts"})).await;
    assert_eq!(reply, json!({"type": "subscribed", "channel": "alerts"}));
    drop(gateway);
    // A ticket is not a session.
    let forged = reqwest::Client::new()
        .get(env.at("/api/v2/me"))
        .header("cookie", format!("pulse_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    env.finish().await;
}

/// The claims of the ticket the session `cookie` gets.
async fn ticket_claims(env: &Env, cookie: &str) -> Value {
    let ticket: Value = get_with(env, cookie, "/api/v2/ws-ticket")
        .await
        .json()
        .await
        .unwrap();
    let token = ticket["token"].as_str().unwrap();
    serde_json::from_slice(&decode_b64url(token.split('.').nth(1).unwrap())).unwrap()
}

/// `POST /api/v2/logout` with `query`, as the session `cookie`.
async fn logout(env: &Env, query: &str, cookie: &str) -> reqwest::Response {
    let path = format!("/api/v2/logout{query}");
    send_with(env, reqwest::Method::POST, cookie, &path).await
}

/// A ticket carries how many times its user logged out everywhere before its session was
/// read: a gateway told of a logout everywhere (with the new count) refuses the tickets read
/// before it and lets in those of a login after it at once.
#[tokio::test]
async fn tickets_carry_the_count_of_logouts_everywhere_their_session_was_read_with() {
    let env = spawn().await;
    let first = session_cookie(&env, "admin").await;
    assert_eq!(ticket_claims(&env, &first).await["signouts"], 0);
    assert_logged_out(&logout(&env, "?everywhere=true", &first).await);
    let second = session_cookie(&env, "admin").await;
    assert_eq!(ticket_claims(&env, &second).await["signouts"], 1);
    env.finish().await;
}

/// A ticket names its session as the database names an ended one to the gateways (the first
/// 8 bytes of the token's hash, in hex): a logout reaches exactly that session's tickets.
#[tokio::test]
async fn tickets_name_their_session_as_its_end_is_told() {
    let env = spawn().await;
    let cookie = session_cookie(&env, "admin").await;
    let sid = ticket_claims(&env, &cookie).await["sid"].clone();
    assert_logged_out(&logout(&env, "", &cookie).await);
    let told: Option<String> = sqlx::query_scalar(
        "SELECT string_agg(session, ',') FROM user_changes \
          WHERE tenant_id = $1 AND change = 'session_ended'",
    )
    .bind(&env.tenant)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    let sid = sid.as_str().unwrap_or_default();
    let form = sid.len() == 16
        && sid
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    assert!(form, "a ticket's sid is 16 lowercase hex digits: {sid:?}");
    assert_eq!(told.as_deref(), Some(sid));
    env.finish().await;
}

fn decode_b64url(s: &str) -> Vec<u8> {
    let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = table.iter().position(|t| *t == c).unwrap() as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    out
}

/// A login ends the session the request's cookie named: the browser replaces that cookie, and
/// on the server it would otherwise stay valid for the rest of its life, for whoever kept a
/// copy (the user before, on a shared computer). A failed login ends nothing.
#[tokio::test]
async fn a_login_ends_the_session_whose_cookie_it_replaces() {
    let env = spawn().await;
    let login_over = |cookie: String, who: &str, password: &str| {
        let body = json!({"email": format!("{who}@{}.example", env.tenant), "password": password});
        let url = env.at("/api/v2/login");
        async move {
            reqwest::Client::new()
                .post(url)
                .header("cookie", cookie)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let first = session_cookie(&env, "admin").await;
    assert_eq!(login_over(first.clone(), "viewer", "wrong").await, 401);
    assert_eq!(get_with(&env, &first, "/api/v2/me").await.status(), 200);
    assert_eq!(login_over(first.clone(), "viewer", PASSWORD).await, 200);
    assert_session_ended(&env, &first).await;
    env.finish().await;
}

/// Write routes refuse what they do not know, as every other route does: a query parameter (a
/// `tenant_id` in the query changes nothing, and must not look as if it did) and a body field.
#[tokio::test]
async fn write_routes_refuse_unknown_query_parameters_and_body_fields() {
    let env = spawn().await;
    let admin = env.login("admin", &env.tenant).await;
    let email = format!("admin@{}.example", env.tenant);
    let refused = [
        (
            "/api/v2/login?remember=1",
            json!({"email": email, "password": PASSWORD}),
        ),
        (
            "/api/v2/login",
            json!({"email": email, "password": PASSWORD, "remember": true}),
        ),
        (
            "/api/v2/events?tenant_id=other",
            json!({"topic": "t", "event": "e"}),
        ),
        ("/api/v2/publish-keys?x=1", json!({"name": "k"})),
        (
            "/api/v2/publish-keys",
            json!({"name": "k", "tenant_id": "other"}),
        ),
    ];
    for (path, body) in refused {
        let r = post_json(&admin, env.at(path), &body).await;
        assert_eq!(error_code(r, 400).await, "bad_request", "{path} {body}");
    }
    let key = env.create_publish_key(&admin, "kept").await;
    let path = format!("/api/v2/publish-keys/{}?x=1", key["key_id"]);
    let r = admin.delete(env.at(&path)).send().await.unwrap();
    assert_eq!(error_code(r, 400).await, "bad_request");
    // Nothing was done: no event, no key but the one made above, which is still there.
    let listed: Value = get_json(&admin, env.at("/api/v2/publish-keys")).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    let events: Value = get_json(&admin, env.at("/api/v2/events?topic=t")).await;
    assert_eq!(events["events"], json!([]), "{events}");
    env.finish().await;
}

//! The web service as deployed: logged in as a member of only `pulse_web` and `pulse_tenant`
//! (without inheriting), on a database that an owner with no superuser or CREATEROLE migrated
//! (deploy/README.md). The other tests run the service on a superuser's login, where only the
//! role it sets binds it.

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn every_route_answers_for_a_login_with_only_the_web_roles() {
    let env = spawn_deployed().await;
    let admin = env.login("admin", &env.tenant).await;
    for path in [
        "/api/v2/me",
        "/api/v2/devices",
        "/api/v2/devices/dev-0001",
        "/api/v2/devices/dev-0001/telemetry",
        "/api/v2/alerts",
        "/api/v2/fleet",
        "/api/v2/events?topic=orders",
        "/api/v2/publish-keys",
        "/api/v2/ws-ticket",
    ] {
        let r = get(&admin, env.at(path)).await;
        assert_eq!(r.status(), 200, "{path}: {}", r.text().await.unwrap());
    }

    // Events: written, with and without a retry's key, and read back.
    let event = json!({"topic": "orders", "event": "order:placed"});
    let r = env.post_event(&admin, &event).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let keyed = || {
        admin
            .post(env.at("/api/v2/events"))
            .header("idempotency-key", "order-1")
            .json(&event)
            .send()
    };
    let first: Value = keyed().await.unwrap().json().await.unwrap();
    let again: Value = keyed().await.unwrap().json().await.unwrap();
    assert_eq!((&first["seq"], &again["seq"]), (&json!(2), &json!(2)));
    let page: Value = get_json(&admin, env.at("/api/v2/events?topic=orders")).await;
    assert_eq!(page["last_seq"], 2, "{page}");

    // A backend's publish key: made, used (its use noted), revoked.
    let created = env.create_publish_key(&admin, "orders-backend").await;
    let key = created["key"].as_str().unwrap().to_owned();
    let r = env.publish_as(&key, &event).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let keys: Value = get_json(&admin, env.at("/api/v2/publish-keys")).await;
    assert!(keys["items"][0]["last_used_at"].is_string(), "{keys}");
    let path = format!("/api/v2/publish-keys/{}", created["key_id"]);
    assert_eq!(
        admin.delete(env.at(&path)).send().await.unwrap().status(),
        204
    );
    let r = env.publish_as(&key, &event).await;
    assert_eq!(error_code(r, 401).await, "unauthorized");

    // The session ends with a logout; a second one of the same user, with a logout
    // everywhere from a third.
    let r = admin.post(env.at("/api/v2/logout")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = admin.get(env.at("/api/v2/me")).send().await.unwrap();
    assert_eq!(error_code(r, 401).await, "unauthorized");
    let (second, third) = (
        env.login("admin", &env.tenant).await,
        env.login("admin", &env.tenant).await,
    );
    let r = third.post(env.at("/api/v2/logout?everywhere=true")).send();
    assert_eq!(r.await.unwrap().status(), 204);
    let r = second.get(env.at("/api/v2/me")).send().await.unwrap();
    assert_eq!(error_code(r, 401).await, "unauthorized");
    env.finish().await;
}

//! A user deleted, whose role changed, or whose sessions all ended reaches the gateways on
//! `pulse.v1.<tenant>.users`.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn deleting_a_user_changing_its_role_or_its_password_is_passed_on_to_the_gateways() {
    let (db, tenant) = db_with_tenant("users", 1).await;
    let ids = add_users(&db, &tenant, &["admin", "viewer", "bystander"]).await;
    let mut changes = subscribe(&format!("pulse.v1.{tenant}.users")).await;
    let poller = spawn_poller(config(&db)).await;
    wait_listening(&poller, &db, &tenant).await;

    // A change that touches neither the role nor the password passes nothing on, nor does a
    // password set to what it was.
    for sql in [
        "UPDATE users SET password_hash = password_hash WHERE user_id = $1",
        "UPDATE users SET email = 'renamed-' || email WHERE user_id = $1",
        "UPDATE users SET password_hash = 'y' WHERE user_id = $1",
    ] {
        exec_with(&db, sql, ids[2]).await;
    }
    let sql = "UPDATE users SET role = 'customer_viewer' WHERE user_id = $1";
    exec_with(&db, sql, ids[1]).await;
    exec_with(&db, "DELETE FROM users WHERE user_id = $1", ids[0]).await;
    let signed_out = changes.next_body(Duration::from_secs(5)).await;
    let first = changes.next_body(Duration::from_secs(5)).await;
    let second = changes.next_body(Duration::from_secs(5)).await;
    assert_eq!(
        signed_out,
        json!({"type": "user_changed", "tenant_id": tenant, "user_id": ids[2].to_string(), "change": "signed_out"})
    );
    assert_eq!(
        first,
        json!({"type": "user_changed", "tenant_id": tenant, "user_id": ids[1].to_string(), "change": "role"})
    );
    assert_eq!(
        second,
        json!({"type": "user_changed", "tenant_id": tenant, "user_id": ids[0].to_string(), "change": "deleted"})
    );
    changes.assert_silent_for(Duration::from_millis(300)).await;

    // A logout everywhere is counted, and tells the count.
    let token_hash = vec![7u8; 32];
    sqlx::query("INSERT INTO sessions (token_hash, user_id, expires_at) VALUES ($1, $2, now() + interval '1 hour')")
        .bind(&token_hash)
        .bind(ids[2])
        .execute(&db.pool)
        .await
        .unwrap();
    exec_with(&db, "SELECT pulse_end_sessions_everywhere($1)", token_hash).await;
    assert_eq!(
        changes.next_body(Duration::from_secs(5)).await,
        json!({"type": "user_changed", "tenant_id": tenant, "user_id": ids[2].to_string(), "change": "signed_out", "signouts": 1})
    );
    poller.stop().await;
}

/// Any role that may connect can send a notification: the poller takes one only as a hint to
/// read the changes the database queued, so a forged one disconnects no one.
#[tokio::test]
async fn a_notification_forged_by_a_tenants_role_changes_no_one() {
    let users = deployed_users("usersforged", &["admin", "viewer"]).await;
    let (db, tenant, ids) = (&users.deployed.db, &users.tenant, &users.ids);
    let (mut changes, poller) = (users.changes, users.poller);

    // The web service's login (the tenant-facing roles) forges a deletion, a sign-out with a
    // count of none, and a change of a user that does not exist.
    let tenant_side = sqlx::PgPool::connect(&users.deployed.web_url)
        .await
        .unwrap();
    for forged in [
        format!("user:{tenant}:{}:deleted", ids[0]),
        format!("user:{tenant}:{}:signed_out:0", ids[1]),
        format!("user:{tenant}:999999:role"),
    ] {
        sqlx::query("SELECT pg_notify('pulse_changes', $1)")
            .bind(&forged)
            .execute(&tenant_side)
            .await
            .unwrap();
    }
    // Then a real change: the first thing the gateways hear.
    exec_with(
        db,
        "UPDATE users SET role = 'customer_viewer' WHERE user_id = $1",
        ids[1],
    )
    .await;
    assert_eq!(
        changes.next_body(Duration::from_secs(10)).await,
        json!({"type": "user_changed", "tenant_id": tenant, "user_id": ids[1].to_string(), "change": "role"})
    );
    changes.assert_silent_for(Duration::from_millis(500)).await;
    poller.stop().await;
}

/// A change made while no poller listened waits in the queue for the next active one. One that
/// would do harm sent late (a role change from before any ticket now alive) is dropped; a
/// deletion is sent whatever its age.
#[tokio::test]
async fn a_user_change_made_while_no_poller_was_active_reaches_the_gateways() {
    let (db, tenant) = db_with_tenant("users-gap", 1).await;
    let ids = add_users(&db, &tenant, &["gone", "long-gone", "demoted-long-ago"]).await;
    let mut changes = subscribe(&format!("pulse.v1.{tenant}.users")).await;

    exec_with(&db, "DELETE FROM users WHERE user_id = $1", ids[1]).await;
    let sql = "UPDATE users SET role = 'customer_viewer' WHERE user_id = $1";
    exec_with(&db, sql, ids[2]).await;
    let sql =
        "UPDATE user_changes SET changed_at = changed_at - interval '1 hour' WHERE user_id = $1";
    for id in [ids[1], ids[2]] {
        exec_with(&db, sql, id).await;
    }
    exec_with(&db, "DELETE FROM users WHERE user_id = $1", ids[0]).await;

    let poller = spawn_poller(config(&db)).await;
    let deleted = |id: i64| json!({"type": "user_changed", "tenant_id": tenant, "user_id": id.to_string(), "change": "deleted"});
    assert_eq!(
        changes.next_body(Duration::from_secs(10)).await,
        deleted(ids[1])
    );
    assert_eq!(
        changes.next_body(Duration::from_secs(5)).await,
        deleted(ids[0])
    );
    changes.assert_silent_for(Duration::from_millis(500)).await;
    let queued = count(&db, "SELECT count(*) FROM user_changes").await;
    assert_eq!(queued, 0, "sent and stale changes are removed");
    poller.stop().await;
}

/// A change the poller published into a connection whose server then died, before reading it,
/// is sent again: a batch leaves the queue only once NATS answered after it.
#[tokio::test]
async fn a_user_change_lost_with_a_nats_server_that_died_is_sent_again() {
    use async_nats::jetstream::stream;

    let mut stack = on_private_nats("users-lost", 1).await;
    let ids = add_users(&stack.db, &stack.tenant, &["gone"]).await;
    wait_listening(&stack.poller, &stack.db, &stack.tenant).await;
    // What reaches the server on the tenant's users subject, kept across its restart.
    let client = pulse_test_support::nats::connect(&stack.nats.url)
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let seen = js
        .create_stream(stream::Config {
            name: "USERS_SEEN".into(),
            subjects: vec![format!("pulse.v1.{}.users", stack.tenant)],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();

    stack.nats.pause();
    exec_with(&stack.db, "DELETE FROM users WHERE user_id = $1", ids[0]).await;
    // The poller has taken the change off the queue (its row locked by a batch, or removed)
    // and published it into the frozen server's connection, just after.
    let free = "SELECT count(*) FROM (SELECT 1 FROM user_changes FOR UPDATE SKIP LOCKED) f";
    eventually(
        "the change taken by a batch",
        Duration::from_secs(10),
        || async { count(&stack.db, free).await == 0 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Whatever the server had not read dies with it.
    stack.nats.stop().await;
    stack.nats.start_again().await;

    eventually("the deletion received", Duration::from_secs(30), || async {
        let stream = js.get_stream("USERS_SEEN").await;
        stream.is_ok_and(|s| s.cached_info().state.messages >= 1)
    })
    .await;
    let message = seen
        .get_last_raw_message_by_subject(&format!("pulse.v1.{}.users", stack.tenant))
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(body["change"], "deleted", "{body}");
    assert_eq!(body["user_id"], ids[0].to_string(), "{body}");
    stack.poller.stop().await;
}

/// A session ended before its time (a logout) reaches the gateways, naming the session as its
/// tickets do; one deleted once expired, or with its user, is not told.
#[tokio::test]
async fn a_session_ended_by_a_logout_is_passed_on_naming_the_session() {
    let (db, tenant) = db_with_tenant("sessions", 1).await;
    let ids = add_users(&db, &tenant, &["kiosk", "gone"]).await;
    let mut changes = subscribe(&format!("pulse.v1.{tenant}.users")).await;
    let poller = spawn_poller(config(&db)).await;
    wait_listening(&poller, &db, &tenant).await;
    // Sessions whose tokens hash to ab…ab and cd…cd (expired) of the first user, ef…ef of the
    // second.
    let (kiosk, gone) = (ids[0], ids[1]);
    sqlx::raw_sql(&format!(
        "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES \
           (decode(repeat('ab', 32), 'hex'), {kiosk}, now() + interval '1 hour'), \
           (decode(repeat('cd', 32), 'hex'), {kiosk}, now() - interval '1 minute'), \
           (decode(repeat('ef', 32), 'hex'), {gone}, now() + interval '1 hour')"
    ))
    .execute(&db.pool)
    .await
    .unwrap();
    // The expired one swept, the user of the third deleted, then a logout.
    sqlx::raw_sql("DELETE FROM sessions WHERE expires_at < now()")
        .execute(&db.pool)
        .await
        .unwrap();
    exec_with(&db, "DELETE FROM users WHERE user_id = $1", ids[1]).await;
    exec_with(
        &db,
        "DELETE FROM sessions WHERE token_hash = $1",
        vec![0xabu8; 32],
    )
    .await;
    let deleted = changes.next_body(Duration::from_secs(10)).await;
    assert_eq!(deleted["change"], "deleted", "{deleted}");
    assert_eq!(
        changes.next_body(Duration::from_secs(5)).await,
        json!({"type": "user_changed", "tenant_id": tenant, "user_id": ids[0].to_string(),
               "change": "session_ended", "session": "abababababababab"})
    );
    changes.assert_silent_for(Duration::from_millis(500)).await;
    poller.stop().await;
}

/// A new password ends every session of its user, told once as such, not once per session;
/// a TRUNCATE of the sessions tells each user who had a live one.
#[tokio::test]
async fn the_end_of_every_session_is_told_once_not_per_session() {
    let (db, tenant) = db_with_tenant("sessions-all", 1).await;
    let ids = add_users(&db, &tenant, &["many", "truncated"]).await;
    let (many, truncated) = (ids[0], ids[1]);
    sqlx::raw_sql(&format!(
        "INSERT INTO sessions (token_hash, user_id, expires_at) \
         SELECT sha256(g::text::bytea), {many}, now() + interval '1 hour' \
           FROM generate_series(1, 50) g; \
         INSERT INTO sessions (token_hash, user_id, expires_at) \
         VALUES (sha256('t'::bytea), {truncated}, now() + interval '1 hour')"
    ))
    .execute(&db.pool)
    .await
    .unwrap();
    let mut changes = subscribe(&format!("pulse.v1.{tenant}.users")).await;
    let poller = spawn_poller(config(&db)).await;
    wait_listening(&poller, &db, &tenant).await;

    exec_with(
        &db,
        "UPDATE users SET password_hash = 'y' WHERE user_id = $1",
        many,
    )
    .await;
    let signed_out = |id: i64| {
        json!({"type": "user_changed", "tenant_id": tenant, "user_id": id.to_string(),
               "change": "signed_out"})
    };
    assert_eq!(
        changes.next_body(Duration::from_secs(10)).await,
        signed_out(many)
    );
    changes.assert_silent_for(Duration::from_millis(500)).await;

    sqlx::raw_sql("TRUNCATE sessions")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        changes.next_body(Duration::from_secs(10)).await,
        signed_out(truncated)
    );
    changes.assert_silent_for(Duration::from_millis(500)).await;
    poller.stop().await;
}

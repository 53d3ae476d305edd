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
    let signed_out = changes.next_within(Duration::from_secs(5)).await.unwrap().1;
    let first = changes.next_within(Duration::from_secs(5)).await.unwrap().1;
    let second = changes.next_within(Duration::from_secs(5)).await.unwrap().1;
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
        changes.next_within(Duration::from_secs(5)).await.unwrap().1,
        json!({"type": "user_changed", "tenant_id": tenant, "user_id": ids[2].to_string(), "change": "signed_out", "signouts": 1})
    );
    poller.stop().await;
}
